"""The ImageNet ViT benchmark (benchmarks/imagenet/vitb16) is lightly's DINO.

- The original module, transform, flags and evaluations are checked against
  tests.benchmarks.lightly_imagenet.LIGHTLY_VITB16 (the transcription of lightly's
  vitb16 scripts); built in lightly's order, it holds lightly's weights bit for bit.
- DINO-ER and DINO, built under one seed, have identical weights, buffers and
  outputs.

The runs and the command line: test_vitb16_runs.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import torch
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
from timm.models.vision_transformer import VisionTransformer, vit_small_patch16_224
from torch import Tensor, nn

from benchmarks.imagenet import _common
from benchmarks.imagenet.vitb16 import dino, evaluation
from benchmarks.imagenet.vitb16 import main as bench
from tests.benchmarks.imagenet.helpers import (
    NUM_CLASSES,
    attach,
    linear_shapes,
)
from tests.benchmarks.lightly_imagenet import (
    LIGHTLY_EVALUATION,
    LIGHTLY_VITB16,
    LIGHTLY_VITB16_CLI,
)
from tests.benchmarks.state import assert_same_state, fingerprint

EXPECTED = LIGHTLY_VITB16["dino"]


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
        assert linear_shapes(head) == linears
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
        attach(model, world_size=world_size, num_devices=world_size)
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
    stub = attach(model)
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
        attach(model, global_step=step)
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
    attach(linear, world_size=2)
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
    attach(classifier)
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
