"""The ImageNet ResNet-50 benchmark (benchmarks/imagenet/resnet50) holds lightly's values.

The original modules, transforms, optimizers, schedules, EMA updates, queues, flags
and evaluations are checked against tests.benchmarks.lightly_imagenet (the
transcription of lightly's scripts). The weights, the runs and the command line:
test_resnet50_twins.py and test_resnet50_runs.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import torch
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.models.utils import get_weight_decay_parameters
from lightly.transforms import (
    BYOLTransform,
    DINOTransform,
    MoCoV2Transform,
    SimCLRTransform,
    SwaVTransform,
)
from lightly.transforms.torchvision_v2_compatibility import torchvision_transforms as T
from lightly.transforms.utils import IMAGENET_NORMALIZE
from lightly.utils.benchmarking import (
    FinetuneClassifier,
    KNNClassifier,
    LinearClassifier,
    OnlineLinearClassifier,
)
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn
from torchvision.models import resnet50

from benchmarks.imagenet import _common
from benchmarks.imagenet.resnet50 import evaluation, mocov2
from benchmarks.imagenet.resnet50 import main as bench
from tests.benchmarks.imagenet.helpers import (
    NUM_CLASSES,
    attach,
    linear_shapes,
)
from tests.benchmarks.imagenet.resnet50_models import (
    METHOD_MODULES,
    original_module,
    small_module,
    views_of,
)
from tests.benchmarks.lightly_imagenet import (
    LIGHTLY_EVALUATION,
    LIGHTLY_RESNET50,
    LIGHTLY_RESNET50_CLI,
)
from tests.benchmarks.state import assert_same_state, fingerprint

README = Path(__file__).resolve().parents[3] / "benchmarks" / "imagenet" / "README.md"


# -- lightly's values ------------------------------------------------------------------
def _lightly_transform(method: str) -> Any:
    """The augmentation exactly as lightly's ResNet-50 scripts build it."""
    name, kwargs = LIGHTLY_RESNET50[method]["transform"]
    classes = {
        "SimCLRTransform": SimCLRTransform,
        "MoCoV2Transform": MoCoV2Transform,
        "BYOLTransform": BYOLTransform,
        "DINOTransform": DINOTransform,
        "SwaVTransform": SwaVTransform,
    }
    return classes[name](**kwargs)


@pytest.mark.parametrize("method", sorted(LIGHTLY_RESNET50))
def test_transform_is_lightlys(method: str) -> None:
    ours = fingerprint(METHOD_MODULES[method].transform())
    assert ours == fingerprint(_lightly_transform(method))
    # Not vacuous: another crop size changes the fingerprint.
    assert fingerprint(METHOD_MODULES[method].transform(32)) != ours
    # The ER objective trains on the same augmentation.
    assert bench.METHODS[f"{method}_er"].transform is bench.METHODS[method].transform


def test_evaluation_transforms_are_lightlys() -> None:
    normalize = T.Normalize(
        mean=IMAGENET_NORMALIZE["mean"], std=IMAGENET_NORMALIZE["std"]
    )
    spec = LIGHTLY_EVALUATION["resnet50"]
    lightly_eval = T.Compose(
        [
            T.Resize(spec["eval_transform"]["resize"]),
            T.CenterCrop(spec["eval_transform"]["crop"]),
            T.ToTensor(),
            normalize,
        ]
    )
    lightly_train = T.Compose(
        [
            T.RandomResizedCrop(spec["train_transform"]["crop"]),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            normalize,
        ]
    )
    assert fingerprint(_common.eval_transform()) == fingerprint(lightly_eval)
    assert fingerprint(_common.train_transform()) == fingerprint(lightly_train)
    assert fingerprint(_common.eval_transform(32)) != fingerprint(lightly_eval)


@pytest.mark.parametrize("method", sorted(LIGHTLY_RESNET50))
def test_module_is_lightlys(method: str) -> None:
    expected = LIGHTLY_RESNET50[method]
    model = original_module(method)
    assert isinstance(model.backbone, type(resnet50()))
    assert isinstance(model.backbone.fc, nn.Identity)
    assert isinstance(model.online_classifier, OnlineLinearClassifier)
    assert model.online_classifier.feature_dim == 2048
    # Heads: class, linear layers, the extra arguments.
    for name, (cls_name, linears, kwargs) in expected["heads"].items():
        head = model.get_submodule(name)
        assert type(head).__name__ == cls_name, name
        assert linear_shapes(head) == linears, name
        for key, value in kwargs.items():
            if key == "norm_last_layer":
                # norm_last_layer fixes the weight norm's magnitude (no gradient).
                g = [
                    p
                    for n, p in head.last_layer.named_parameters()
                    if n.endswith("_g") or n.endswith("original0")
                ]
                assert g, name
                assert all(p.requires_grad != value for p in g), name
            else:
                assert getattr(head, key) == value, (name, key)
    # Teachers: a deep copy of the student's module, or initialized on their own.
    for name, start in expected["teachers"].items():
        if start.startswith("copy:"):
            assert_same_state(model.get_submodule(name), model.backbone)
        else:
            twin = {
                "key_projection_head": "projection_head",
                "teacher_projection_head": "projection_head",
                "student_projection_head": "projection_head",
            }[name]
            a = model.get_submodule(name).state_dict()
            b = model.get_submodule(twin).state_dict()
            assert any(
                not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point()
            ), name
    # Loss.
    loss_cls, values = expected["loss"]
    assert type(model.criterion).__name__ == loss_cls
    for key, value in values.items():
        if key == "memory_bank_size":
            assert tuple(model.criterion.memory_bank.size) == value
        elif key == "output_dim":
            assert model.criterion.center.shape[-1] == value
        elif key == "warmup_teacher_temp":
            schedule = model.criterion.teacher_temp_schedule
            assert schedule[0].item() == pytest.approx(value), key
        elif isinstance(value, bool):
            assert getattr(model.criterion, key) is value, key
        else:
            assert getattr(model.criterion, key) == pytest.approx(value), key
    assert (hasattr(model, "knn_classifier")) == expected["online_knn"]


@pytest.mark.parametrize("method", sorted(LIGHTLY_RESNET50))
def test_optimizer_and_schedule_are_lightlys(method: str) -> None:
    expected = LIGHTLY_RESNET50[method]
    model = original_module(method)
    opt_cls, opt_values = expected["optimizer"]
    rule, base = expected["lr"]
    for batch_size, world_size in ((128, 1), (32, 8), (256, 3)):
        model.batch_size_per_device = batch_size
        attach(model, world_size=world_size, num_devices=world_size)
        (optimizer,), (scheduler,) = model.configure_optimizers()
        assert type(optimizer).__name__ == opt_cls
        if rule == "sqrt":
            lr = base * math.sqrt(batch_size * world_size)
        else:
            lr = base * batch_size * world_size / 256
        assert optimizer.defaults["lr"] == pytest.approx(lr, rel=1e-12)
        for key, value in opt_values.items():
            assert optimizer.defaults[key] == value, key
        # lightly's per-step schedule: warmup over whole epochs, 1000 steps in all.
        assert scheduler["interval"] == "step"
        sched = scheduler["scheduler"]
        assert sched.warmup_epochs == int(1000 / 100 * expected["warmup_epochs"])
        assert sched.max_epochs == 1000
        end = expected["end_value"]
        if isinstance(end, tuple):
            end = end[1] * batch_size * world_size / 256
        assert sched.end_value == pytest.approx(end, rel=1e-12)
    model.batch_size_per_device = 128
    # Groups: weights, norm layers and biases without decay, the classifier.
    groups = optimizer.param_groups
    assert [g["name"] for g in groups] == [
        n.format(name=method) for n in expected["param_groups"]
    ]
    trained = [model.get_submodule(n) for n in expected["trained"]]
    decay, no_decay = get_weight_decay_parameters(trained)
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in decay]
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in no_decay]
    assert [id(p) for p in groups[2]["params"]] == [
        id(p) for p in model.online_classifier.parameters()
    ]
    assert groups[0]["weight_decay"] == opt_values["weight_decay"]
    assert groups[1]["weight_decay"] == groups[2]["weight_decay"] == 0.0


class _MomentumSpy:
    """Records the update_momentum calls of a method module, then runs them."""

    def __init__(self, module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: List[Tuple[nn.Module, nn.Module, float]] = []
        self.original = module.update_momentum
        monkeypatch.setattr(module, "update_momentum", self)

    def __call__(self, model: nn.Module, model_ema: nn.Module, m: float) -> None:
        self.calls.append((model, model_ema, m))
        self.original(model, model_ema, m)


@pytest.mark.parametrize("method", ["mocov2", "byol", "dino"])
def test_ema_is_lightlys(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = LIGHTLY_RESNET50[method]
    spy = _MomentumSpy(METHOD_MODULES[method], monkeypatch)
    model = small_module(method)
    for step in (0, 500):
        spy.calls.clear()
        attach(model, global_step=step)
        model.training_step((views_of(method), torch.zeros(4, dtype=torch.long), []), 0)
        pairs = [
            (model.get_submodule(a), model.get_submodule(b))
            for a, b in expected["ema_pairs"]
        ]
        assert [(s, t) for s, t, _ in spy.calls] == pairs
        kind, *values = expected["ema"]
        if kind == "constant":
            wanted = values[0]
        else:
            wanted = cosine_schedule(step, 1000, values[0], values[1])
        assert all(m == pytest.approx(wanted, rel=1e-12) for _, _, m in spy.calls)
    # --ema replaces the schedule by a constant.
    spy.calls.clear()
    torch.manual_seed(0)
    model = bench.build_model(method, 4, NUM_CLASSES, backbone="resnet18", ema=0.5)
    attach(model, global_step=500)
    model.training_step((views_of(method), torch.zeros(4, dtype=torch.long), []), 0)
    assert [m for _, _, m in spy.calls] == [0.5, 0.5]


def test_moco_updates_keys_between_query_and_key_encoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: List[Tuple[str, float]] = []
    spy = _MomentumSpy(mocov2, monkeypatch)
    model = small_module("mocov2")
    attach(model)
    model.backbone.register_forward_hook(
        lambda m, args, out: events.append(("query", float(args[0].sum())))
    )
    model.key_backbone.register_forward_hook(
        lambda m, args, out: events.append(("key", float(args[0].sum())))
    )
    original = spy.original

    def record(a: nn.Module, b: nn.Module, m: float) -> None:
        events.append(("update", m))
        original(a, b, m)

    spy.original = record
    views = views_of("mocov2")
    model.training_step((views, torch.zeros(4, dtype=torch.long), []), 0)
    assert [e for e, _ in events] == ["query", "update", "update", "key"]
    # Queries from the second view, keys from the first (shuffled: compare sums).
    assert events[0][1] == pytest.approx(float(views[1].sum()), rel=1e-5)
    assert events[3][1] == pytest.approx(float(views[0].sum()), rel=1e-5)


def test_dino_teacher_temperature_clipping_and_freezing_are_lightlys() -> None:
    expected = LIGHTLY_RESNET50["dino"]
    model = small_module("dino")
    stub = attach(model)
    calls: List[Dict[str, Any]] = []
    forward = model.criterion.forward

    def spy(*args: Any, **kwargs: Any) -> Tensor:
        calls.append(kwargs)
        return forward(*args, **kwargs)  # type: ignore[no-any-return]

    model.criterion.forward = spy  # type: ignore[method-assign]
    model.training_step((views_of("dino"), torch.zeros(4, dtype=torch.long), []), 0)
    assert [c["teacher_temp"] for c in calls] == [expected["teacher_temp"]]
    # The teacher is switched off for gradients when training starts.
    model.on_train_start()
    for name in expected["frozen_on_train_start"]:
        assert not any(p.requires_grad for p in model.get_submodule(name).parameters())
    model.on_train_end()
    assert all(p.requires_grad for p in model.backbone.parameters())
    # Clipping to norm 3, then the last layer's gradient dropped in epoch 0 only.
    algorithm, clip = expected["gradient_clip"]
    optimizer = torch.optim.SGD(
        model.param_groups([model.student_backbone, model.student_projection_head]),
        lr=0.1,
    )
    params = [p for g in optimizer.param_groups for p in g["params"]]
    last = list(model.student_projection_head.last_layer.parameters())
    for epoch in (0, 1):
        stub.current_epoch = epoch
        for p in params:
            p.grad = torch.ones_like(p)
        model.configure_gradient_clipping(optimizer)
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
        assert algorithm == "norm"
        if epoch < 1:
            # Clipped with the last layer, whose gradient is then dropped.
            assert all(p.grad is None for p in last)
            assert norm.item() < clip
        else:
            assert all(p.grad is not None for p in last if p.requires_grad)
            assert norm.item() == pytest.approx(clip, rel=1e-2)


def test_swav_queue_is_lightlys(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = LIGHTLY_RESNET50["swav"]["queue"]
    model = original_module("swav")
    assert len(model.queues) == queue["count"]
    for bank in model.queues:
        assert isinstance(bank, MemoryBankModule)
        assert tuple(bank.size) == (queue["batches"] * 128, queue["dim"])
    model = small_module("swav")
    calls: List[Any] = []
    forward = model.criterion.forward

    def spy(*args: Any, **kwargs: Any) -> Tensor:
        calls.append(kwargs["queue_outputs"])
        return forward(*args, **kwargs)  # type: ignore[no-any-return]

    model.criterion.forward = spy  # type: ignore[method-assign]
    # The banks are buffers outside the state dict.
    before = {k: v.clone() for k, v in model.queues.named_buffers()}
    assert before
    for epoch, batch_idx, used in (
        (queue["start_epoch"] - 1, 20, False),
        (queue["start_epoch"], 0, False),
        (queue["start_epoch"], queue["batches"] + 1, True),
    ):
        attach(model, current_epoch=epoch)
        model.training_step(
            (views_of("swav"), torch.zeros(4, dtype=torch.long), []), batch_idx
        )
        assert (calls[-1] is not None) == used
        filled = any(
            not torch.equal(before[k], v) for k, v in model.queues.named_buffers()
        )
        assert filled == (epoch >= queue["start_epoch"])


def test_simclr_online_knn_is_lightlys() -> None:
    model = original_module("simclr")
    knn = model.knn_classifier
    assert isinstance(knn, KNNClassifier)
    assert (knn.knn_k, knn.knn_t) == (200, 0.1)
    assert (knn.train_dataloader_idx, knn.val_dataloader_idx) == (0, 1)
    assert knn.model is None and knn.topk == (1, 5)


def test_cli_defaults_are_lightlys() -> None:
    args = vars(bench.build_parser().parse_args([]))
    for key, value in LIGHTLY_RESNET50_CLI.items():
        if key in ("train_dir", "val_dir", "log_dir"):
            value = Path(value)
        assert args[key] == value, key
    # Our options reproduce lightly's run by default.
    assert args["backbone"] == "resnet50" and args["image_size"] == 224
    assert (args["linear_epochs"], args["finetune_epochs"]) == (
        LIGHTLY_EVALUATION["resnet50"]["linear"]["epochs"],
        LIGHTLY_EVALUATION["resnet50"]["finetune"]["epochs"],
    )
    assert args["ema"] is None and args["device_stats"] is False
    assert args["limit_train_batches"] is None and args["limit_val_batches"] is None
    assert args["no_entropy_monitor"] is False


def test_evaluations_are_lightlys(
    monkeypatch: pytest.MonkeyPatch, image_folder: Path, tmp_path: Path
) -> None:
    spec = LIGHTLY_EVALUATION["resnet50"]
    captured: Dict[str, Any] = {}

    def fake_fit(classifier: Any, config: Any, log_dir: Any, stage: str, epochs: int, images: Any) -> Dict[str, float]:  # fmt: skip
        captured[stage] = (classifier, epochs, fingerprint(images))
        return {}

    monkeypatch.setattr(evaluation, "fit_classifier", fake_fit)
    model = small_module("byol")
    config = _common.RunConfig(
        image_folder, image_folder, 4, 0, "cpu", 1, "32-true", "auto", NUM_CLASSES
    )
    args = bench.build_parser().parse_args([])
    evaluation.linear_eval(model, config, tmp_path, epochs=args.linear_epochs)
    evaluation.finetune_eval(model, config, tmp_path, epochs=args.finetune_epochs)
    for stage, name in (("linear_eval", "linear"), ("finetune_eval", "finetune")):
        classifier, epochs, images = captured[stage]
        assert type(classifier).__name__ == spec[name]["classifier"]
        assert classifier.lr == spec[name]["lr"] and epochs == spec[name]["epochs"]
        assert classifier.feature_dim == 512 and classifier.topk == (1, 5)
        assert images == fingerprint(_common.train_transform())
    assert type(captured["linear_eval"][0]) is LinearClassifier
    assert type(captured["finetune_eval"][0]) is FinetuneClassifier

    class Stop(Exception):
        pass

    def fake_knn(**kwargs: Any) -> None:
        captured["knn"] = kwargs
        raise Stop

    monkeypatch.setattr(evaluation, "KNNClassifier", fake_knn)
    with pytest.raises(Stop):
        evaluation.knn_eval(model, config, tmp_path, knn_k=args.knn_k, knn_t=args.knn_t)
    assert (captured["knn"]["knn_k"], captured["knn"]["knn_t"]) == (
        spec["knn"]["knn_k"],
        spec["knn"]["knn_t"],
    )
