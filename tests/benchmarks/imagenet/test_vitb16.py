"""The ImageNet ViT benchmark (benchmarks/imagenet/vitb16) is lightly's DINO.

- The original module, transform, flags and evaluations are checked against
  tests.benchmarks.lightly_imagenet.LIGHTLY_VITB16 (the transcription of lightly's
  vitb16 scripts); built in lightly's order, it holds lightly's weights bit for bit.
- DINO-ER and DINO, built under one seed, have identical weights, buffers and
  outputs.
- dino and dino_er pretrain for one batch on CPU with a one-block test ViT on
  56-pixel crops; the last layer stays frozen in the first epoch, the weight decay
  follows its schedule, and, as in lightly's script, no gradient is clipped.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lightly.data.multi_view_collate import MultiViewCollate
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead, MaskedVisionTransformerTIMM
from lightly.models.utils import get_weight_decay_parameters
from lightly.transforms import DINOTransform
from lightly.utils.benchmarking import (
    FinetuneClassifier,
    LinearClassifier,
    OnlineLinearClassifier,
)
from lightly.utils.scheduler import cosine_schedule
from PIL import Image
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.plugins.precision import Precision
from timm.models.vision_transformer import VisionTransformer, vit_small_patch16_224
from torch import Tensor, nn

from benchmarks.common.cli import DefaultsHelpFormatter
from benchmarks.imagenet import _common
from benchmarks.imagenet.vitb16 import dino, evaluation
from benchmarks.imagenet.vitb16 import main as bench
from tests.benchmarks.lightly_imagenet import (
    LIGHTLY_EVALUATION,
    LIGHTLY_VITB16,
    LIGHTLY_VITB16_CLI,
)
from tests.benchmarks.state import assert_same_state, fingerprint

NUM_CLASSES = 5
IMAGES_PER_CLASS = 4
EXPECTED = LIGHTLY_VITB16["dino"]


# -- helpers ---------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """One intra-op thread: on the shared 2-core machine more threads only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NUM_CLASSES class folders of IMAGES_PER_CLASS random 32x32 PNG images."""
    root = tmp_path_factory.mktemp("imagenet") / "train"
    rng = np.random.default_rng(0)
    for c in range(NUM_CLASSES):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(IMAGES_PER_CLASS):
            pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            pixels[..., c % 3] = 40 * c + 40
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


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
        "--strategy",
        "auto",
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
        "--knn-k",
        "3",
        "--backbone",
        "vit_test",
        "--image-size",
        "56",
        "--limit-train-batches",
        "1",
        "--limit-val-batches",
        "1",
        "--linear-epochs",
        "1",
        "--finetune-epochs",
        "1",
        "--entropy-every-n-steps",
        "1",
        "--seed",
        "0",
    ]


def _csv_metrics(stage_dir: Path) -> Dict[str, List[float]]:
    files = sorted(stage_dir.glob("version_*/metrics.csv"))
    assert files, f"no metrics.csv under {stage_dir}"
    out: Dict[str, List[float]] = {}
    with open(files[-1], newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if value not in ("", None):
                    out.setdefault(key, []).append(float(value))
    return out


def _linears(module: nn.Module) -> Tuple[Tuple[int, int], ...]:
    return tuple(
        (m.in_features, m.out_features)
        for m in module.modules()
        if isinstance(m, nn.Linear)
    )


def _attach(model: pl.LightningModule, **overrides: Any) -> SimpleNamespace:
    """Attaches a stub trainer and silences logging (no Trainer runs the module)."""
    values: Dict[str, Any] = {
        "world_size": 1,
        "num_devices": 1,
        "estimated_stepping_batches": 1000,
        "max_epochs": 100,
        "global_step": 0,
        "current_epoch": 0,
        "gradient_clip_val": None,
        "gradient_clip_algorithm": None,
        "precision_plugin": Precision(),
        "state": SimpleNamespace(stage="train"),
    }
    values.update(overrides)
    stub = SimpleNamespace(**values)
    model.trainer = stub  # type: ignore[assignment]
    model.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    model.log_dict = lambda *args, **kwargs: None  # type: ignore[method-assign]
    return stub


def _drop_paths(vit: VisionTransformer) -> List[float]:
    return [float(getattr(b.drop_path1, "drop_prob", 0.0)) for b in vit.blocks]


_ORIGINAL: Dict[str, Any] = {}


def _original() -> Any:
    """lightly's module: ViT-S/16, 128 images per device, 1000 classes (seed 0)."""
    if not _ORIGINAL:
        torch.manual_seed(0)
        _ORIGINAL["dino"] = bench.build_model("dino", 128, 1000)
    return _ORIGINAL["dino"]


def _small(method: str = "dino", seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return bench.build_model(method, 4, NUM_CLASSES, backbone="vit_test")


def _views(batch_size: int = 4) -> List[Tensor]:
    return [torch.randn(batch_size, 3, 56, 56) for _ in range(2)] + [
        torch.randn(batch_size, 3, 24, 24) for _ in range(8)
    ]


# -- lightly's values ------------------------------------------------------------------
def test_transform_is_lightlys() -> None:
    name, kwargs = EXPECTED["transform"]
    assert name == "DINOTransform"
    ours = fingerprint(dino.transform())
    assert ours == fingerprint(DINOTransform(**kwargs))
    assert fingerprint(dino.transform(56)) != ours
    assert bench.METHODS["dino_er"].transform is bench.METHODS["dino"].transform


def test_module_is_lightlys() -> None:
    model = _original()
    # Teacher and student: ViT-S/16 in lightly's masked wrapper, dynamic image size;
    # stochastic depth 0.1 (timm's linear rule over the blocks) for the student.
    reference = {
        "backbone": vit_small_patch16_224(**EXPECTED["backbone"][1]),
        "student_backbone": vit_small_patch16_224(**EXPECTED["student_backbone"][1]),
    }
    for name, vit in reference.items():
        ours = model.get_submodule(name)
        assert isinstance(ours, MaskedVisionTransformerTIMM)
        assert isinstance(ours.vit, VisionTransformer)
        assert ours.vit.embed_dim == vit.embed_dim == EXPECTED["embed_dim"]
        assert len(ours.vit.blocks) == len(vit.blocks) == 12
        assert ours.vit.patch_embed.patch_size == vit.patch_embed.patch_size
        assert ours.vit.dynamic_img_size is True
        assert _drop_paths(ours.vit) == pytest.approx(_drop_paths(vit))
    assert max(_drop_paths(model.student_backbone.vit)) == pytest.approx(0.1)
    assert max(_drop_paths(model.backbone.vit)) == 0.0
    # Heads.
    for name, (cls_name, linears, kwargs) in EXPECTED["heads"].items():
        head = model.get_submodule(name)
        assert type(head).__name__ == cls_name
        assert _linears(head) == linears
        assert head.freeze_last_layer == kwargs["freeze_last_layer"]
        g = [p for n, p in head.last_layer.named_parameters() if n.endswith("_g")]
        assert g and all(p.requires_grad != kwargs["norm_last_layer"] for p in g)
    # Teachers start on their own (not copies of the student).
    for name, start in EXPECTED["teachers"].items():
        assert start == "fresh"
        twin = "backbone" if name == "student_backbone" else "projection_head"
        a = model.get_submodule(name).state_dict()
        b = model.get_submodule(twin).state_dict()
        assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    # Loss and online classifier.
    loss_cls, values = EXPECTED["loss"]
    assert type(model.criterion).__name__ == loss_cls
    assert model.criterion.center.shape[-1] == values["output_dim"]
    assert model.criterion.teacher_temp_schedule[0].item() == pytest.approx(
        values["warmup_teacher_temp"]
    )
    for key in ("teacher_temp", "student_temp", "center_momentum"):
        assert getattr(model.criterion, key) == pytest.approx(values[key])
    assert model.criterion.warmup_teacher_temp_epochs == 30
    assert isinstance(model.online_classifier, OnlineLinearClassifier)
    assert model.online_classifier.feature_dim == EXPECTED["embed_dim"]


def test_optimizer_and_schedule_are_lightlys() -> None:
    model = _original()
    opt_cls, opt_values = EXPECTED["optimizer"]
    _, base = EXPECTED["lr"]
    for batch_size, world_size in ((128, 1), (32, 8), (256, 3)):
        model.batch_size_per_device = batch_size
        _attach(model, world_size=world_size, num_devices=world_size)
        (optimizer,), (scheduler,) = model.configure_optimizers()
        assert type(optimizer).__name__ == opt_cls
        lr = base * batch_size * world_size / 256
        assert optimizer.defaults["lr"] == pytest.approx(lr, rel=1e-12)
        assert optimizer.defaults["betas"] == opt_values["betas"]
        sched = scheduler["scheduler"]
        assert scheduler["interval"] == "step"
        assert sched.warmup_epochs == int(1000 / 100 * EXPECTED["warmup_epochs"])
        assert (sched.max_epochs, sched.end_value) == (1000, EXPECTED["end_value"])
    model.batch_size_per_device = 128
    groups = optimizer.param_groups
    assert {g["name"]: g["weight_decay"] for g in groups} == (
        EXPECTED["group_weight_decay"]
    )
    trained = [model.get_submodule(n) for n in EXPECTED["trained"]]
    decay, no_decay = get_weight_decay_parameters(trained)
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in decay]
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in no_decay]
    assert [id(p) for p in groups[2]["params"]] == [
        id(p) for p in model.online_classifier.parameters()
    ]


def test_weight_decay_schedule_and_last_layer_freeze() -> None:
    _, start, end = EXPECTED["weight_decay_schedule"]
    model = _small()
    stub = _attach(model)
    (optimizer,), _ = model.configure_optimizers()
    last = [
        p
        for p in model.student_projection_head.last_layer.parameters()
        if p.requires_grad
    ]
    assert last
    for step, epoch in ((0, 0), (500, 0), (1000, 1)):
        stub.global_step, stub.current_epoch = step, epoch
        for p in last:
            p.grad = torch.ones_like(p)
        model.on_before_optimizer_step(optimizer)
        wd = {g["name"]: g["weight_decay"] for g in optimizer.param_groups}
        assert wd["dino"] == pytest.approx(cosine_schedule(step, 1000, start, end))
        assert wd["dino_no_weight_decay"] == wd["online_classifier"] == 0.0
        assert all((p.grad is None) == (epoch < 1) for p in last)


def test_ema_and_teacher_are_lightlys(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: List[Tuple[nn.Module, nn.Module, float]] = []
    original = dino.update_momentum

    def spy(model: nn.Module, model_ema: nn.Module, m: float) -> None:
        calls.append((model, model_ema, m))
        original(model, model_ema, m)

    monkeypatch.setattr(dino, "update_momentum", spy)
    model = _small()
    temps: List[Any] = []
    forward = model.criterion.forward

    def loss_spy(*args: Any, **kwargs: Any) -> Tensor:
        temps.append(kwargs.get("teacher_temp"))
        return forward(*args, **kwargs)  # type: ignore[no-any-return]

    model.criterion.forward = loss_spy  # type: ignore[method-assign]
    teacher_out: List[bool] = []
    model.projection_head.register_forward_hook(
        lambda m, args, out: teacher_out.append(out.requires_grad)
    )
    _, start, stop = EXPECTED["ema"]
    for step in (0, 500):
        calls.clear()
        _attach(model, global_step=step)
        model.training_step((_views(), torch.zeros(4, dtype=torch.long), []), 0)
        pairs = [
            (model.get_submodule(a), model.get_submodule(b))
            for a, b in EXPECTED["ema_pairs"]
        ]
        assert [(a, b) for a, b, _ in calls] == pairs
        wanted = cosine_schedule(step, 1000, start, stop)
        assert all(m == pytest.approx(wanted, rel=1e-12) for _, _, m in calls)
    assert temps == [EXPECTED["teacher_temp"]] * 2
    # The teacher runs without gradient, its parameters left trainable as lightly's.
    assert teacher_out == [False, False]
    assert all(
        p.requires_grad
        for n, p in model.backbone.named_parameters()
        if "pos_embed" not in n  # fixed sine-cosine embedding
    )
    assert all(p.requires_grad for p in model.projection_head.parameters())


def test_cli_defaults_are_lightlys() -> None:
    args = vars(bench.build_parser().parse_args([]))
    for key, value in LIGHTLY_VITB16_CLI.items():
        if key in ("train_dir", "val_dir", "log_dir"):
            value = Path(value)
        assert args[key] == value, key
    assert args["backbone"] == EXPECTED["backbone"][0]
    assert args["image_size"] == 224 and args["ema"] is None
    spec = LIGHTLY_EVALUATION["vitb16"]
    assert (args["linear_epochs"], args["finetune_epochs"]) == (
        spec["linear"]["epochs"],
        spec["finetune"]["epochs"],
    )
    assert bench.BENCHMARK.pretrain_sanity_steps == spec["pretrain_sanity_steps"]
    assert type(bench.BENCHMARK.collate_fn).__name__ == spec["pretrain_collate"]


def test_evaluations_are_lightlys(
    monkeypatch: pytest.MonkeyPatch, image_folder: Path, tmp_path: Path
) -> None:
    spec = LIGHTLY_EVALUATION["vitb16"]
    captured: Dict[Tuple[str, str], Any] = {}

    def fake_fit(classifier: Any, config: Any, log_dir: Any, stage: str, epochs: int, images: Any) -> Dict[str, float]:  # fmt: skip
        captured[(stage, type(classifier).__name__)] = (classifier, epochs, images)
        return {}

    monkeypatch.setattr(evaluation, "fit_classifier", fake_fit)
    model = _small()
    config = _common.RunConfig(
        image_folder, image_folder, 4, 0, "cpu", 1, "32-true", "auto", NUM_CLASSES
    )
    for method in ("mae", "simclr"):
        evaluation.linear_eval(model, config, tmp_path, eval_method=method)
        evaluation.finetune_eval(model, config, tmp_path, eval_method=method)
    assert {k[1] for k in captured} == {
        spec["linear"]["mae"]["classifier"],
        spec["linear"]["simclr"]["classifier"],
        spec["finetune"]["mae"]["classifier"],
        spec["finetune"]["simclr"]["classifier"],
    }
    # MAE's linear classifier: batch norm without affine parameters, then LARS.
    linear = captured[("linear_eval", "LinearClassifierMAE")][0]
    bn, fc = linear.classification_head
    assert isinstance(bn, nn.BatchNorm1d) and not bn.affine and bn.eps == 1e-6
    assert (fc.in_features, fc.out_features) == (32, NUM_CLASSES)
    _attach(linear, world_size=2)
    (optimizer,), (scheduler,) = linear.configure_optimizers()
    mae = spec["linear"]["mae"]
    assert type(optimizer).__name__ == mae["optimizer"]
    assert optimizer.defaults["lr"] == pytest.approx(mae["lr"] * 4 * 2 / 256)
    assert scheduler["scheduler"].warmup_epochs == int(
        1000 / 100 * mae["warmup_epochs"]
    )
    # MAE's fine-tuning: AdamW, weight decay 0.05 except norms, biases, classifier.
    finetune = captured[("finetune_eval", "FinetuneClassifierMAE")]
    classifier, epochs, images = finetune
    assert epochs == spec["finetune"]["epochs"]
    assert type(images).__name__ == "Compose"  # timm's RandAugment pipeline
    mae = spec["finetune"]["mae"]
    assert classifier.mixup.mixup_alpha == mae["mixup"]["mixup_alpha"]
    assert classifier.mixup.cutmix_alpha == mae["mixup"]["cutmix_alpha"]
    assert classifier.mixup.label_smoothing == mae["mixup"]["label_smoothing"]
    _attach(classifier)
    (optimizer,), (scheduler,) = classifier.configure_optimizers()
    assert type(optimizer).__name__ == mae["optimizer"]
    lr = mae["lr"] * 4 / 256
    by_name = {g["name"]: g for g in optimizer.param_groups}
    # A timm ViT has no block named encoder_layer_<i>: one group, no layer decay.
    assert set(by_name) == {"vit", "vit_no_weight_decay", "classification_head"}
    assert by_name["vit"]["initial_lr"] == pytest.approx(lr)
    assert by_name["vit"]["weight_decay"] == mae["weight_decay"]
    assert by_name["vit_no_weight_decay"]["weight_decay"] == 0.0
    assert scheduler["scheduler"].warmup_epochs == int(
        1000 / 100 * mae["warmup_epochs"]
    )
    # lightly's own classifiers for eval_method="simclr".
    assert type(captured[("linear_eval", "LinearClassifier")][0]) is LinearClassifier
    simclr_ft = captured[("finetune_eval", "FinetuneClassifier")][0]
    assert type(simclr_ft) is FinetuneClassifier
    assert simclr_ft.lr == spec["finetune"]["simclr"]["lr"]


# -- lightly's weights, and the ER twin's --------------------------------------------
def _lightly_build() -> Dict[str, nn.Module]:
    """The modules of lightly's vitb16 DINO, in the order it builds them."""
    out: Dict[str, nn.Module] = {}
    vit = vit_small_patch16_224(dynamic_img_size=True)
    out["backbone"] = MaskedVisionTransformerTIMM(vit=vit)
    out["projection_head"] = DINOProjectionHead(input_dim=384, norm_last_layer=False)
    vit_student = vit_small_patch16_224(dynamic_img_size=True, drop_path_rate=0.1)
    out["student_backbone"] = MaskedVisionTransformerTIMM(vit=vit_student)
    out["student_projection_head"] = DINOProjectionHead(
        input_dim=384, freeze_last_layer=1, norm_last_layer=False
    )
    out["criterion"] = DINOLoss()
    out["online_classifier"] = OnlineLinearClassifier(feature_dim=384, num_classes=1000)
    return out


def test_lightly_weights_and_er_twin_are_bitwise_equal() -> None:
    torch.manual_seed(0)
    reference = _lightly_build()
    original = _original()
    for name, module in reference.items():
        assert_same_state(original.get_submodule(name), module)
    torch.manual_seed(0)
    er = bench.build_model("dino_er", 128, 1000)
    assert type(er.criterion) is not DINOLoss
    assert isinstance(er.criterion, DINOLoss)
    assert_same_state(er, original)
    torch.manual_seed(1)
    images = torch.randn(2, 3, 64, 64)
    for name in ("backbone", "student_backbone"):
        # The same stochastic depth draws for both (the student drops paths).
        torch.manual_seed(2)
        a = er.get_submodule(name)(images)
        torch.manual_seed(2)
        assert torch.equal(a, original.get_submodule(name)(images)), name
    x = torch.randn(4, 384)
    for name in EXPECTED["heads"]:
        a = er.get_submodule(name)(x)
        assert torch.equal(a, original.get_submodule(name)(x)), name
        assert er.get_submodule(name).entropy_meter.temperature == 0.1


# -- runs ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["dino", "dino_er"])
def test_pretrains_and_evaluates(
    method: str, image_folder: Path, tmp_path: Path
) -> None:
    args = _base_args(image_folder, tmp_path) + ["--methods", method]
    if method == "dino_er":
        args += ["--skip-linear-eval", "--skip-finetune-eval"]
    results = bench.main(args)
    (run_dir,) = (tmp_path / method).iterdir()
    pretrain = _csv_metrics(run_dir / "pretrain")
    assert np.isfinite(pretrain["train_loss"]).all()
    assert "val_online_cls_top1" in pretrain
    assert "ema_momentum" in pretrain
    logged = {k.split("/")[1] for k in pretrain if k.startswith("entropy/")}
    # The student's head and backbone; an ER criterion's terms too.
    expected = {"student_projection_head", "student_backbone"}
    assert logged == expected | ({"criterion"} if method == "dino_er" else set())
    if method == "dino_er":
        assert np.isfinite(pretrain["train_entropy"]).all()
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == results[method]
    assert 0.0 <= saved["knn_eval/val_knn_top1"] <= 1.0
    if method == "dino":
        for stage in ("linear_eval", "finetune_eval"):
            assert 0.0 <= saved[f"{stage}/val_top1"] <= 1.0
            assert _csv_metrics(run_dir / stage)["val_top5"]


def test_last_layer_frozen_in_first_epoch_and_no_clipping(image_folder: Path) -> None:
    assert EXPECTED["gradient_clip"] is None
    assert dino.DINO.configure_gradient_clipping is (
        pl.LightningModule.configure_gradient_clipping
    )
    pl.seed_everything(0, workers=True)
    model = bench.build_model("dino", 4, NUM_CLASSES, backbone="vit_test")
    start = {
        k: v.clone() for k, v in model.student_projection_head.state_dict().items()
    }
    norms: Dict[str, float] = {}
    last = set(map(id, model.student_projection_head.last_layer.parameters()))

    def grad_norm(optimizer: Any) -> float:
        grads = [
            p.grad
            for g in optimizer.param_groups
            for p in g["params"]
            if p.grad is not None and id(p) not in last
        ]
        return float(torch.stack([g.norm() for g in grads]).norm())

    class Norms(pl.Callback):
        def on_before_optimizer_step(
            self, trainer: pl.Trainer, module: Any, optimizer: Any
        ) -> None:
            norms["before"] = grad_norm(optimizer)

    config = _common.RunConfig(
        image_folder, image_folder, 4, 0, "cpu", 1, "32-true", "auto", NUM_CLASSES
    )
    loader = _common.make_loader(
        image_folder,
        dino.transform(56),
        config,
        shuffle=True,
        drop_last=True,
        persistent=False,
        collate_fn=bench.BENCHMARK.collate_fn,
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
    assert trainer.global_step == 2
    # The gradient the optimizer used is the unclipped one (lightly clips none).
    assert grad_norm(trainer.optimizers[0]) == pytest.approx(norms["before"], rel=1e-6)
    end = model.student_projection_head.state_dict()
    for key, value in start.items():
        moved = not torch.equal(end[key], value)
        assert moved != key.startswith("last_layer"), key


def test_pretraining_trainer_is_lightlys(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured: Dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fit(self: pl.Trainer, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None, ckpt_path: Any = None) -> None:  # fmt: skip
        captured.update(trainer=self, train=train_dataloaders, val=val_dataloaders)
        raise Stop

    monkeypatch.setattr(pl.Trainer, "fit", fit)
    with pytest.raises(Stop):
        bench.main(_base_args(image_folder, tmp_path) + ["--methods", "dino"])
    trainer = captured["trainer"]
    (early,) = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert early.monitor == "train_loss" and early.check_finite
    assert trainer.num_sanity_val_steps == 0  # lightly's vitb16 main.py
    assert isinstance(captured["train"].collate_fn, MultiViewCollate)
    assert captured["train"].drop_last
    assert not isinstance(captured["val"], list)  # no online kNN for DINO
    assert not (tmp_path / "dino").exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--image-size", "60", "patch size"),
        ("--eval-method", "linear", "--eval-method"),
        ("--backbone", "vit_base_patch16_224", "--backbone"),
        ("--methods", "mae", "--methods"),
        ("--epochs", "-1", "--epochs must be >= 0, got -1"),
        ("--log-dir", "{file}", "--log-dir {file} exists and is not a directory"),
        ("--knn-k", "5", "--knn-k 5 exceeds the kNN bank of at most 4 images"),
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
    args = _base_args(image_folder, tmp_path / "logs")
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


def test_help_shows_every_default() -> None:
    parser = bench.build_parser()
    formatter = DefaultsHelpFormatter(parser.prog)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in formatter._get_help_string(action), action.dest


def test_command_line_names_are_the_modules() -> None:
    """The names --help offers without importing the methods are theirs."""
    assert bench.COMMAND_LINE.methods == tuple(bench.METHODS)
    assert bench.COMMAND_LINE.backbones == tuple(dino.VIT_BACKBONES)
    assert bench.COMMAND_LINE.eval_methods == evaluation.EVAL_METHODS
    assert bench.COMMAND_LINE.knn_t == bench.BENCHMARK.knn_t
