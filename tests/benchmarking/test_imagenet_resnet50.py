"""The ImageNet ResNet-50 benchmark (benchmarks/imagenet/resnet50) on a tiny tree.

Every method, original and ER, pretrains for one batch on CPU with a ResNet-18 on
32-pixel images, then runs the kNN and linear evaluations; the metrics must reach the
CSV logs and results.json. A 2-process gloo run checks that an ER method's entropy,
estimated on the gathered batch, equals the single-process entropy of the global batch.
"""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from benchmarks.imagenet.resnet50 import main as bench
from tests.loss.dist_harness import run_distributed_and_single

NUM_CLASSES = 3
IMAGES_PER_CLASS = 8


def _image_folder(root: Path) -> Path:
    """NUM_CLASSES class folders of IMAGES_PER_CLASS random 32x32 PNG images."""
    rng = np.random.default_rng(0)
    for c in range(NUM_CLASSES):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(IMAGES_PER_CLASS):
            pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            pixels[..., c] = 200  # a class-dependent colour
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _image_folder(tmp_path_factory.mktemp("imagenet") / "train")


def _base_args(data: Path, log_dir: Path) -> List[str]:
    return [
        "--train-dir",
        str(data),
        "--val-dir",
        str(data),
        "--log-dir",
        str(log_dir),
        "--accelerator",
        "cpu",
        "--devices",
        "1",
        "--precision",
        "32-true",
        "--num-workers",
        "0",
        "--batch-size-per-device",
        "4",
        "--epochs",
        "1",
        "--num-classes",
        str(NUM_CLASSES),
        "--backbone",
        "resnet18",
        "--image-size",
        "32",
        "--limit-train-batches",
        "1",
        "--limit-val-batches",
        "1",
        "--linear-epochs",
        "1",
        "--skip-finetune-eval",
        "--entropy-every-n-steps",
        "1",
        "--seed",
        "0",
    ]


def _csv_metrics(stage_dir: Path) -> Dict[str, List[float]]:
    """metric -> logged values of the CSV logger's metrics.csv of one stage."""
    files = sorted(stage_dir.glob("version_*/metrics.csv"))
    assert files, f"no metrics.csv under {stage_dir}"
    out: Dict[str, List[float]] = {}
    with open(files[-1], newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if value not in ("", None):
                    out.setdefault(key, []).append(float(value))
    return out


@pytest.mark.parametrize("method", bench.METHODS)
def test_every_method_pretrains_and_evaluates(
    method: str, image_folder: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(2)
    args = _base_args(image_folder, tmp_path) + ["--methods", method]
    results = bench.main(args)

    (run_dir,) = (tmp_path / method).iterdir()
    pretrain = _csv_metrics(run_dir / "pretrain")
    assert np.isfinite(pretrain["train_loss"]).all()
    assert "val_online_cls_top1" in pretrain
    if method.endswith("_er"):
        assert np.isfinite(pretrain["train_entropy"]).all()
    # the entropy monitor is on by default and logs every watched module
    monitored = bench.parse_method(method)[0][0].monitor_modules
    for module in monitored:
        assert f"entropy/{module}/entropy" in pretrain, sorted(pretrain)
    assert list(run_dir.glob("pretrain/version_*/entropy_monitor.csv"))
    assert list(run_dir.glob("pretrain/version_*/events.out.tfevents.*"))
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    knn = _csv_metrics(run_dir / "knn_eval")
    (knn_key,) = [k for k in knn if k.startswith("val_knn_top1")]
    assert 0.0 <= knn[knn_key][-1] <= 1.0
    linear = _csv_metrics(run_dir / "linear_eval")
    assert 0.0 <= linear["val_top1"][-1] <= 1.0

    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == results[method]
    assert {"knn_eval/val_knn_top1", "linear_eval/val_top1"} <= set(saved)


def test_no_entropy_monitor_flag(image_folder: Path, tmp_path: Path) -> None:
    args = _base_args(image_folder, tmp_path) + [
        "--methods",
        "simclr_er",
        "--no-entropy-monitor",
        "--skip-knn-eval",
        "--skip-linear-eval",
    ]
    bench.main(args)
    (run_dir,) = (tmp_path / "simclr_er").iterdir()
    pretrain = _csv_metrics(run_dir / "pretrain")
    assert not [k for k in pretrain if k.startswith("entropy/")]
    assert not list(run_dir.glob("pretrain/version_*/entropy_monitor.csv"))


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--train-dir", "missing", "--train-dir"),
        ("--num-classes", "2", "class folders"),
        ("--batch-size-per-device", "0", "--batch-size-per-device"),
        ("--ema", "1.5", "--ema"),
    ],
)
def test_bad_input_is_one_error_line(
    flag: str,
    value: str,
    message: str,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = _base_args(image_folder, tmp_path)
    if flag == "--train-dir":
        value = str(tmp_path / value)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    with pytest.raises(SystemExit) as info:
        bench.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "simclr").exists()


class _MethodEntropy(nn.Module):
    """The entropy term of simclr_er's loss, built by the benchmark's build_model."""

    def __init__(self, gather_distributed: bool) -> None:
        super().__init__()
        model = bench.build_model(
            "simclr_er",
            batch_size_per_device=4,
            num_classes=NUM_CLASSES,
            devices=2 if gather_distributed else 1,
            backbone="resnet18",
        )
        assert model.criterion.gather_distributed == gather_distributed
        self.criterion = model.criterion

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        entropy: Tensor = self.criterion.forward_components(z0, z1).entropy
        return entropy


def test_er_entropy_on_gathered_batch_equals_single_process() -> None:
    torch.manual_seed(0)
    z0 = torch.randn(8, 128, dtype=torch.float64)
    z1 = torch.randn(8, 128, dtype=torch.float64)
    factory = functools.partial(_MethodEntropy)
    d_entropy, s_entropy, d_grads, s_grads = run_distributed_and_single(
        factory, [z0, z1]
    )
    torch.testing.assert_close(d_entropy, s_entropy)
    for d, s in zip(d_grads, s_grads, strict=True):
        torch.testing.assert_close(d, s)


def test_resume_from_checkpoint(image_folder: Path, tmp_path: Path) -> None:
    first = _base_args(image_folder, tmp_path / "first") + [
        "--methods",
        "simclr_er",
        "--skip-knn-eval",
        "--skip-linear-eval",
        "--no-entropy-monitor",
    ]
    bench.main(first)
    (run_dir,) = (tmp_path / "first" / "simclr_er").iterdir()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == 1

    second = _base_args(image_folder, tmp_path / "second") + [
        "--methods",
        "simclr_er",
        "--epochs",
        "2",
        "--ckpt-path",
        str(ckpt),
        "--skip-linear-eval",
        "--no-entropy-monitor",
    ]
    results = bench.main(second)
    (run_dir,) = (tmp_path / "second" / "simclr_er").iterdir()
    resumed = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert resumed["global_step"] == 2  # one step more: the second epoch only
    assert "knn_eval/val_knn_top1" in results["simclr_er"]
