"""DINOv2 and DINOv2-ER in the ImageNet ViT benchmark (benchmarks/imagenet/vitb16).

- The original module is lightly's recipe (benchmarks/imagenet/vitb16/dinov2.py in
  lightly): built in lightly's order it holds lightly's weights bit for bit, with its
  losses, transform, layer-wise learning rates, weight decays and clipping.
- DINOv2-ER differs in the DINO and KoLeo losses only (ERDINOLoss and ERKoLeoLoss,
  gathered): same weights under one seed; ERKoLeoLoss has KoLeo's gradient.
- dinov2 and dinov2_er pretrain for one batch on CPU with the one-block test ViT.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from lightly.loss import DINOLoss, IBOTPatchLoss, KoLeoLoss
from lightly.models.modules import DINOv2ProjectionHead, MaskedVisionTransformerTIMM
from lightly.models.utils import update_drop_path_rate
from lightly.transforms import DINOTransform
from lightly.utils.benchmarking import OnlineLinearClassifier
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from benchmarks.imagenet.vitb16 import dinov2
from benchmarks.imagenet.vitb16 import main as bench
from lightly_er.loss import ERDINOLoss, ERKoLeoLoss
from tests.benchmarks.imagenet.helpers import (
    NUM_CLASSES,
    attach,
    csv_metrics,
    vitb16_args,
)
from tests.benchmarks.state import assert_same_state, fingerprint


def _small(method: str = "dinov2", seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return bench.build_model(method, 4, NUM_CLASSES, backbone="vit_test")


def _views(batch_size: int = 4) -> List[Tensor]:
    return [torch.randn(batch_size, 3, 56, 56) for _ in range(2)] + [
        torch.randn(batch_size, 3, 24, 24) for _ in range(8)
    ]


def _lightly_build() -> Dict[str, nn.Module]:
    """The modules of lightly's DINOv2 recipe (test ViT), in its order."""
    vit = VisionTransformer(
        patch_size=8,
        embed_dim=32,
        depth=1,
        num_heads=2,
        pos_embed="learn",
        dynamic_img_size=True,
        init_values=1e-5,
    )
    out: Dict[str, nn.Module] = {}
    out["backbone"] = MaskedVisionTransformerTIMM(
        vit=vit, antialias=False, pos_embed_initialization="skip"
    )
    out["student_backbone"] = copy.deepcopy(out["backbone"])
    update_drop_path_rate(out["student_backbone"].vit, 0.1, mode="uniform")
    head = partial(DINOv2ProjectionHead, input_dim=32)
    out["projection_head"] = head()
    out["student_projection_head"] = head()
    out["criterion"] = DINOLoss()
    out["ibot_criterion"] = IBOTPatchLoss()
    out["koleo_criterion"] = KoLeoLoss()
    out["online_classifier"] = OnlineLinearClassifier(
        feature_dim=32, num_classes=NUM_CLASSES
    )
    return out


def test_module_is_lightlys_recipe_and_the_er_twin_differs_in_the_losses() -> None:
    torch.manual_seed(0)
    reference = _lightly_build()
    original = _small()
    for name, module in reference.items():
        assert_same_state(original.get_submodule(name), module)
    assert type(original.criterion) is DINOLoss
    assert type(original.koleo_criterion) is KoLeoLoss
    assert original.ibot_head is original.projection_head  # shared, as lightly's
    assert not any(p.requires_grad for p in original.backbone.parameters())
    er = _small("dinov2_er")
    assert type(er.criterion) is ERDINOLoss and er.criterion.gather_distributed
    assert type(er.koleo_criterion) is ERKoLeoLoss
    assert er.koleo_criterion.gather_distributed
    assert type(er.ibot_criterion) is IBOTPatchLoss
    assert_same_state(er, original)
    assert fingerprint(dinov2.transform()) == fingerprint(
        DINOTransform(
            global_crop_scale=(0.32, 1), local_crop_scale=(0.05, 0.32), n_local_views=8
        )
    )


def test_layer_wise_learning_rates_and_weight_decay_are_lightlys() -> None:
    model = _small()
    attach(model, world_size=2)
    (optimizer,), (scheduler,) = model.configure_optimizers()
    lr = 0.004 * (4 * 2 / 1024) ** 0.5
    # The peak learning rates (the scheduler starts the warmup at 0).
    groups = {g["name"]: g for g in optimizer.param_groups}
    for group in groups.values():
        group["peak"] = group["initial_lr"]
    decay = lambda layer: 0.9 ** (1 + 1 - layer)  # noqa: E731 (one block)
    assert groups["student_backbone.vit.cls_token"]["peak"] == pytest.approx(
        lr * decay(0)
    )
    assert groups["student_backbone.vit.patch_embed.proj.weight"]["peak"] == (
        pytest.approx(lr * decay(0) * 0.2)
    )
    block = "student_backbone.vit.blocks.0.attn.qkv.weight"
    assert groups[block]["peak"] == pytest.approx(lr * decay(1))
    assert groups[block]["weight_decay"] == 0.04
    assert groups["student_backbone.vit.blocks.0.ls1.gamma"]["weight_decay"] == 0.0
    assert groups["student_backbone.vit.norm.weight"]["weight_decay"] == 0.0
    assert groups["online_classifier"]["peak"] == pytest.approx(lr)
    assert not any(name.startswith(("backbone", "projection")) for name in groups)
    assert scheduler["scheduler"].end_value == pytest.approx(1e-6 / lr)
    # The heads' last layer is frozen in the first epoch; the decay follows its cosine.
    model.on_before_optimizer_step(optimizer)
    last = [g for g in optimizer.param_groups if "last_layer" in g["name"]]
    assert last and all(g["lr"] == 0.0 for g in last)
    assert groups[block]["weight_decay"] == pytest.approx(0.04)


def test_er_koleo_has_koleos_gradient_in_the_recipe() -> None:
    tokens = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    grads = []
    for loss in (KoLeoLoss(), ERKoLeoLoss()):
        leaf = tokens.clone().requires_grad_(True)
        (dinov2.KOLEO_WEIGHT * loss(leaf)).backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", ["dinov2", "dinov2_er"])
def test_one_training_step(method: str) -> None:
    model = _small(method)
    stub = attach(model)
    stub.max_epochs = 100
    loss = model.training_step((_views(), torch.zeros(4, dtype=torch.long), []), 0)
    assert torch.isfinite(loss)
    loss.backward()
    student = [p for p in model.student_backbone.parameters() if p.requires_grad]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student)
    assert all(p.grad is None for p in model.backbone.parameters())
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    with torch.no_grad():
        for p in model.student_backbone.parameters():
            p.add_(1.0)
    model.on_train_batch_end(None, None, 0)
    moved = [
        not torch.equal(before[k], v) for k, v in model.backbone.state_dict().items()
    ]
    assert any(moved)
    if method == "dinov2_er":
        assert model.criterion.last_components is not None
        assert torch.isfinite(model.koleo_criterion.last_components.entropy)


@pytest.mark.parametrize("method", ["dinov2", "dinov2_er"])
def test_pretrains_one_batch(method: str, image_folder: Path, tmp_path: Path) -> None:
    args = vitb16_args(image_folder, tmp_path) + [
        "--methods",
        method,
        "--skip-linear-eval",
        "--skip-finetune-eval",
    ]
    bench.main(args)
    (run_dir,) = (tmp_path / method).iterdir()
    pretrain = csv_metrics(run_dir / "pretrain")
    for key in ("train_loss", "train_dino_loss", "train_ibot_loss", "train_koleo_loss"):
        assert np.isfinite(pretrain[key]).all(), key
    assert "val_online_cls_top1" in pretrain
    logged = {k.split("/")[1] for k in pretrain if k.startswith("entropy/")}
    # The student's head, and the frozen teacher head (``projection_head``, lightly's
    # DINOv2 naming) observed read-only; an ER criterion's terms too.
    expected = {"student_projection_head", "projection_head"}
    assert logged == expected | ({"criterion"} if method == "dinov2_er" else set())
    if method == "dinov2_er":
        assert np.isfinite(pretrain["train_entropy"]).all()
        assert np.isfinite(pretrain["train_koleo_entropy"]).all()
