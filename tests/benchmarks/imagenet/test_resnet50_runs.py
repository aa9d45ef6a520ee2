"""Runs of the ImageNet ResNet-50 benchmark on the CPU, and its command line.

Every method, original and ER, pretrains for one batch (ResNet-18 on 32-pixel
generated images in 5 classes) and runs the kNN and linear evaluations. DINO keeps
its last layer frozen in the first epoch and clips the gradient norm to 3; the
entropy monitor does not change training; a failing run leaves no empty folder; a
bad value is one line and exit status 2; a run resumes from its checkpoint; the
README's table of differences is benchmarks.imagenet.differences.DIFFERENCES.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lightly.utils.benchmarking import (
    MetricCallback,
)
from pytorch_lightning.callbacks import (
    DeviceStatsMonitor,
    EarlyStopping,
    LearningRateMonitor,
)
from torch import Tensor
from torch.utils.data import RandomSampler, SequentialSampler

from benchmarks.common.differences import differences_markdown
from benchmarks.imagenet import _cli, _common
from benchmarks.imagenet.differences import DIFFERENCES
from benchmarks.imagenet.resnet50 import dino
from benchmarks.imagenet.resnet50 import main as bench
from tests.benchmarks.imagenet.helpers import (
    NUM_CLASSES,
    csv_metrics,
    resnet50_args,
    state_of,
)

README = Path(__file__).resolve().parents[3] / "benchmarks" / "imagenet" / "README.md"


MONITORED = {
    "simclr": {"projection_head"},
    "mocov2": {"projection_head"},
    "byol": {"projection_head", "prediction_head"},
    "dino": {"student_projection_head"},
    # The prototypes are frozen in the first epoch, so the monitor skips them there
    # as it skips teachers.
    "swav": {"projection_head"},
}
"""The trained heads EntropyMonitor() measures in epoch 0; teachers are skipped."""

BACKBONE = {"dino": "student_backbone"}
"""The student backbone the monitor also watches (``backbone`` unless named here)."""


@pytest.mark.parametrize("method", bench.METHODS)
def test_every_method_pretrains_and_evaluates(
    method: str, image_folder: Path, tmp_path: Path
) -> None:
    args = resnet50_args(image_folder, tmp_path) + ["--methods", method]
    if method.endswith("_er"):
        args.append("--skip-linear-eval")  # the same code as the original's
    results = bench.main(args)

    (run_dir,) = (tmp_path / method).iterdir()
    pretrain = csv_metrics(run_dir / "pretrain")
    assert np.isfinite(pretrain["train_loss"]).all()
    assert any(k.startswith("val_online_cls_top1") for k in pretrain)
    base = method.removesuffix("_er")
    if base == "simclr":
        assert any(k.startswith("val_knn_top1") for k in pretrain), sorted(pretrain)
    if method.endswith("_er"):
        assert np.isfinite(pretrain["train_entropy"]).all()
    logged = {k.split("/")[1] for k in pretrain if k.startswith("entropy/")}
    # The monitor watches the student backbone too, and logs an ER criterion's terms.
    expected = MONITORED[base] | {BACKBONE.get(base, "backbone")}
    if method.endswith("_er"):
        expected |= {"criterion"}
    assert logged == expected
    assert list(run_dir.glob("pretrain/version_0/entropy_monitor.csv"))
    assert list(run_dir.glob("pretrain/version_0/events.out.tfevents.*"))
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    knn = csv_metrics(run_dir / "knn_eval")
    (knn_key,) = [k for k in knn if k.startswith("val_knn_top1")]
    assert 0.0 <= knn[knn_key][-1] <= 1.0
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == results[method]
    assert "knn_eval/val_knn_top1" in saved
    if not method.endswith("_er"):
        linear = csv_metrics(run_dir / "linear_eval")
        assert 0.0 <= linear["val_top1"][-1] <= 1.0
        assert "linear_eval/val_top5" in saved


def _checkpoint_state(run_root: Path, method: str) -> Dict[str, Tensor]:
    (run_dir,) = (run_root / method).iterdir()
    ckpt = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    return dict(ckpt["state_dict"])


def test_entropy_monitor_does_not_change_training(
    image_folder: Path, tmp_path: Path
) -> None:
    common = ["--methods", "byol_er", "--skip-knn-eval", "--skip-linear-eval"]
    common += ["--limit-train-batches", "2"]
    bench.main(resnet50_args(image_folder, tmp_path / "on") + common)
    bench.main(
        resnet50_args(image_folder, tmp_path / "off")
        + common
        + ["--no-entropy-monitor"]
    )
    on = _checkpoint_state(tmp_path / "on", "byol_er")
    off = _checkpoint_state(tmp_path / "off", "byol_er")
    assert on.keys() == off.keys()
    assert all(torch.equal(on[k], off[k]) for k in on)
    (off_dir,) = (tmp_path / "off" / "byol_er").iterdir()
    assert not [k for k in csv_metrics(off_dir / "pretrain") if "entropy/" in k]
    (on_dir,) = (tmp_path / "on" / "byol_er").iterdir()
    assert [k for k in csv_metrics(on_dir / "pretrain") if "entropy/" in k]


def test_dino_freezes_last_layer_and_clips_gradients(
    image_folder: Path, tmp_path: Path
) -> None:
    pl.seed_everything(0, workers=True)
    model = bench.build_model("dino", 4, NUM_CLASSES, backbone="resnet18")
    start = state_of(model.student_projection_head)
    norms: Dict[str, float] = {}

    class Norms(pl.Callback):
        def on_before_optimizer_step(
            self, trainer: pl.Trainer, module: Any, optimizer: Any
        ) -> None:
            grads = [
                p.grad
                for g in optimizer.param_groups
                for p in g["params"]
                if p.grad is not None
            ]
            norms["before"] = float(torch.stack([g.norm() for g in grads]).norm())

    config = _common.RunConfig(
        image_folder, image_folder, 4, 0, "cpu", 1, "32-true", "auto", NUM_CLASSES
    )
    loader = _common.make_loader(
        image_folder,
        dino.transform(32),
        config,
        shuffle=True,
        drop_last=True,
        persistent=False,
    )
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[Norms()],
    )
    trainer.fit(model, loader)
    assert trainer.global_step == 2 and model.current_epoch == 1
    # The last step's gradients stay after fit: clipped to norm 3 (from more).
    optimizer = trainer.optimizers[0]
    grads = [
        p.grad
        for g in optimizer.param_groups
        for p in g["params"]
        if p.grad is not None
    ]
    after = float(torch.stack([g.norm() for g in grads]).norm())
    assert norms["before"] > 3.0
    assert after == pytest.approx(3.0, rel=1e-4)
    # Epoch 0: the last layer has not moved; the rest of the head has.
    end = model.student_projection_head.state_dict()
    for key, value in start.items():
        if key.startswith("last_layer"):
            assert torch.equal(end[key], value), key
    assert any(
        not torch.equal(end[k], v)
        for k, v in start.items()
        if not k.startswith("last_layer")
    )


class _Stop(Exception):
    """Raised by a patched Trainer.fit once it has seen what it was given."""


def _capture_fit(captured: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def fit(self: pl.Trainer, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None, ckpt_path: Any = None) -> None:  # fmt: skip
        captured.update(trainer=self, train=train_dataloaders, val=val_dataloaders)
        raise _Stop

    monkeypatch.setattr(pl.Trainer, "fit", fit)


@pytest.mark.parametrize("method", ["simclr", "byol_er"])
def test_pretraining_trainer_is_lightlys(
    method: str, image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured: Dict[str, Any] = {}
    _capture_fit(captured, monkeypatch)
    extra = ["--device-stats"] if method == "simclr" else []
    with pytest.raises(_Stop):
        bench.main(
            resnet50_args(image_folder, tmp_path) + ["--methods", method] + extra
        )
    trainer = captured["trainer"]
    kinds = [type(c) for c in trainer.callbacks]
    (early,) = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert early.monitor == "train_loss" and early.check_finite
    assert early.patience == int(1e12)
    assert LearningRateMonitor in kinds and MetricCallback in kinds
    assert (DeviceStatsMonitor in kinds) == (method == "simclr")
    assert trainer.max_epochs == 1
    assert trainer.num_sanity_val_steps == 2  # Lightning's default, as lightly
    train = captured["train"]
    assert train.drop_last and isinstance(train.sampler, RandomSampler)
    assert train.batch_size == 4
    val = captured["val"]
    if method == "simclr":
        # The online kNN: the training images with the evaluation transform first.
        knn_bank, val = val
        assert Path(knn_bank.dataset.input_dir) == image_folder
        assert isinstance(knn_bank.sampler, SequentialSampler)
        assert not knn_bank.drop_last
    assert isinstance(val.sampler, SequentialSampler) and not val.drop_last
    assert not (tmp_path / method).exists()


def test_compile_and_matmul_precision_flags(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: List[Any] = []
    monkeypatch.setattr(torch, "compile", lambda m, *a, **k: compiled.append(m) or m)
    before = torch.get_float32_matmul_precision()
    args = resnet50_args(image_folder, tmp_path) + [
        "--methods",
        "byol",
        "--epochs",
        "0",
    ]
    args += ["--skip-knn-eval", "--skip-linear-eval", "--compile-model"]
    args += ["--float32-matmul-precision", "medium"]
    try:
        assert bench.main(args) == {"byol": {}}
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)
    assert [type(m).__name__ for m in compiled] == ["BYOL"]


def test_failure_before_writing_leaves_no_folder(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail_fit(self: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        # As Lightning may: a logger folder made, then an error before any file.
        Path(self.log_dir or "").mkdir(parents=True)
        raise RuntimeError("boom")

    monkeypatch.setattr(pl.Trainer, "fit", fail_fit)
    log_dir = tmp_path / "logs"
    with pytest.raises(RuntimeError, match="boom"):
        bench.main(resnet50_args(image_folder, log_dir) + ["--methods", "swav"])
    assert not log_dir.exists()
    # A folder that held something before the run is kept, as are its files.
    log_dir.mkdir()
    (log_dir / "keep.txt").write_text("x")
    with pytest.raises(RuntimeError, match="boom"):
        bench.main(resnet50_args(image_folder, log_dir) + ["--methods", "swav"])
    assert sorted(p.name for p in log_dir.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--train-dir", "missing", "--train-dir"),
        ("--num-classes", "4", "--num-classes"),
        ("--batch-size-per-device", "0", "--batch-size-per-device"),
        ("--ema", "1.5", "--ema"),
        ("--methods", "barlowtwins", "--methods"),
        ("--strategy", "ddpp", "--strategy"),
        ("--float32-matmul-precision", "low", "--float32-matmul-precision"),
        ("--knn-t", "0", "--knn-t"),
        ("--epochs", "x", "--epochs"),
        ("--epochs", "-1", "--epochs must be >= 0, got -1"),
        ("--log-dir", "{file}", "--log-dir {file} exists and is not a directory"),
        # --limit-val-batches 1 at batch size 4: a bank of 4 of the 20 images
        ("--knn-k", "5", "--knn-k 5 exceeds the kNN bank of at most 4 images"),
        ("--limit-val-batches", "1.5", "--limit-val-batches must be a positive"),
        ("--image-size", "16", "--image-size must be >= 32"),
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
    args = resnet50_args(image_folder, tmp_path / "logs")
    if flag == "--train-dir":
        value = str(tmp_path / value)
    (tmp_path / "a-file").write_text("x")
    value = value.replace("{file}", str(tmp_path / "a-file"))
    message = message.replace("{file}", str(tmp_path / "a-file"))
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    with pytest.raises(SystemExit) as info:
        bench.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    ("limit", "knn_k", "bank"),
    [
        (None, 21, 20),  # every image of the 5 x 4 in the bank
        ("0.5", 11, 8),  # 5 batches of 4, half of them (2) kept
    ],
)
def test_knn_k_beyond_the_bank_is_one_error_line(
    limit: Any,
    knn_k: int,
    bank: int,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Checked before pretraining, where lightly's kNN would crash after it."""
    args = resnet50_args(image_folder, tmp_path / "logs")
    at = args.index("--limit-val-batches")
    del args[at : at + 2]
    if limit is not None:
        args += ["--limit-val-batches", limit]
    args[args.index("--knn-k") + 1] = str(knn_k)
    with pytest.raises(SystemExit) as info:
        bench.main(args + ["--methods", "byol", "--skip-linear-eval"])
    assert info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"--knn-k {knn_k} exceeds the kNN bank of {bank} images" in line, line
    assert not (tmp_path / "logs").exists()
    fraction = None if limit is None else float(limit)
    assert _cli.knn_bank_size(20, 4, 1, fraction) == bank
    # A run without a kNN classifier (no kNN evaluation, no online kNN) is not
    # held to the bank.
    args += ["--skip-knn-eval", "--epochs", "0"]
    assert bench.main(args + ["--methods", "byol", "--skip-linear-eval"]) == {
        "byol": {}
    }


def test_help_shows_every_default() -> None:
    parser = bench.build_parser()
    formatter = _cli.DefaultsHelpFormatter(parser.prog)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in formatter._get_help_string(action), action.dest
    text = parser.format_help()
    assert "pretraining epochs; 0 skips pretraining" in text
    assert "(default: 100)" in text and "(default: 200)" in text  # epochs, knn k


def test_command_line_names_are_the_modules() -> None:
    """The names --help offers without importing the methods are theirs."""
    from benchmarks.imagenet.resnet50._base import BACKBONES

    assert bench.COMMAND_LINE.methods == tuple(bench.METHODS)
    assert bench.COMMAND_LINE.backbones == BACKBONES
    assert bench.COMMAND_LINE.knn_t == bench.BENCHMARK.knn_t


def test_resume_from_checkpoint(image_folder: Path, tmp_path: Path) -> None:
    first = resnet50_args(image_folder, tmp_path / "first") + [
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

    second = resnet50_args(image_folder, tmp_path / "second") + [
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


def test_readme_lists_the_differences() -> None:
    text = README.read_text(encoding="utf-8")
    assert differences_markdown(DIFFERENCES) in text
    assert len(DIFFERENCES) == len({d.setting for d in DIFFERENCES})
    # Every option of ours that the table names exists on the command line.
    flags = {
        a for action in bench.build_parser()._actions for a in action.option_strings
    }
    named = {
        part.strip("`")
        for d in DIFFERENCES
        for part in d.setting.replace("(", " ")
        .replace(")", " ")
        .replace(",", " ")
        .split()
        if part.startswith("`--")
    }
    assert named and named <= flags, named - flags
