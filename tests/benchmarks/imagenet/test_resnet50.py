"""The ImageNet ResNet-50 benchmark (benchmarks/imagenet/resnet50) is lightly's.

- The original modules, transforms, flags and evaluations are checked against
  tests.benchmarks.lightly_imagenet (the transcription of lightly's scripts), and built
  in lightly's order they hold lightly's weights bit for bit.
- An ER module and its original, built under one seed, have identical weights,
  buffers and outputs.
- Every method, original and ER, pretrains for one batch on CPU (ResNet-18 on
  32-pixel generated images in 5 classes) and runs the kNN and linear evaluations.
- DINO keeps its last layer frozen in the first epoch and clips the gradient norm
  to 3; the entropy monitor does not change training; a failing run leaves no empty
  folder; a bad value is one line and exit status 2; the README's table of
  differences is benchmarks.imagenet.differences.DIFFERENCES.
"""

from __future__ import annotations

import copy
import csv
import functools
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss
from lightly.models.modules import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    DINOProjectionHead,
    MoCoProjectionHead,
    SimCLRProjectionHead,
    SwaVProjectionHead,
    SwaVPrototypes,
)
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
    MetricCallback,
    OnlineLinearClassifier,
)
from lightly.utils.scheduler import cosine_schedule
from PIL import Image
from pytorch_lightning.callbacks import (
    DeviceStatsMonitor,
    EarlyStopping,
    LearningRateMonitor,
)
from pytorch_lightning.plugins.precision import Precision
from torch import Tensor, nn
from torch.utils.data import RandomSampler, SequentialSampler
from torchvision.models import resnet50

from benchmarks.common.differences import differences_markdown
from benchmarks.imagenet import _cli, _common
from benchmarks.imagenet.differences import DIFFERENCES
from benchmarks.imagenet.resnet50 import byol, dino, evaluation, mocov2, simclr, swav
from benchmarks.imagenet.resnet50 import main as bench
from tests.benchmarks.lightly_imagenet import (
    LIGHTLY_EVALUATION,
    LIGHTLY_RESNET50,
    LIGHTLY_RESNET50_CLI,
)
from tests.benchmarks.state import assert_same_state, fingerprint, unset_buffers
from tests.loss.dist_harness import run_distributed_and_single

README = Path(__file__).resolve().parents[3] / "benchmarks" / "imagenet" / "README.md"
NUM_CLASSES = 5
IMAGES_PER_CLASS = 4
METHOD_MODULES = {
    "simclr": simclr,
    "mocov2": mocov2,
    "byol": byol,
    "dino": dino,
    "swav": swav,
}


# -- helpers ---------------------------------------------------------------------------
def _image_folder(root: Path) -> Path:
    """NUM_CLASSES class folders of IMAGES_PER_CLASS random 32x32 PNG images."""
    rng = np.random.default_rng(0)
    for c in range(NUM_CLASSES):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(IMAGES_PER_CLASS):
            pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            pixels[..., c % 3] = 40 * c + 40  # a class-dependent color
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """One intra-op thread: on the shared 2-core machine more threads only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def _linears(module: nn.Module) -> Tuple[Tuple[int, int], ...]:
    return tuple(
        (m.in_features, m.out_features)
        for m in module.modules()
        if isinstance(m, nn.Linear)
    )


def _stub_trainer(**overrides: Any) -> SimpleNamespace:
    """What configure_optimizers, the schedules and clip_gradients read of a Trainer."""
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
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def _attach(model: pl.LightningModule, **overrides: Any) -> SimpleNamespace:
    """Attaches a stub trainer and silences logging (no Trainer runs the module)."""
    stub = _stub_trainer(**overrides)
    model.trainer = stub  # type: ignore[assignment]
    model.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    model.log_dict = lambda *args, **kwargs: None  # type: ignore[method-assign]
    return stub


def _state(module: nn.Module) -> Dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# Built once: the original modules at lightly's size (ResNet-50, 128 per device).
_ORIGINALS: Dict[str, Any] = {}


def _original(method: str) -> Any:
    if method not in _ORIGINALS:
        torch.manual_seed(0)
        _ORIGINALS[method] = bench.build_model(method, 128, 1000)
    return _ORIGINALS[method]


def _small(method: str, seed: int = 0) -> Any:
    """A ResNet-18 module for steps on small images."""
    torch.manual_seed(seed)
    return bench.build_model(method, 4, NUM_CLASSES, backbone="resnet18")


def _views(method: str, batch_size: int = 4) -> List[Tensor]:
    if method in ("dino", "swav"):
        counts = (2, 6)
        return [torch.randn(batch_size, 3, 32, 32) for _ in range(counts[0])] + [
            torch.randn(batch_size, 3, 14, 14) for _ in range(counts[1])
        ]
    return [torch.randn(batch_size, 3, 32, 32) for _ in range(2)]


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
    model = _original(method)
    assert isinstance(model.backbone, type(resnet50()))
    assert isinstance(model.backbone.fc, nn.Identity)
    assert isinstance(model.online_classifier, OnlineLinearClassifier)
    assert model.online_classifier.feature_dim == 2048
    # Heads: class, linear layers, the extra arguments.
    for name, (cls_name, linears, kwargs) in expected["heads"].items():
        head = model.get_submodule(name)
        assert type(head).__name__ == cls_name, name
        assert _linears(head) == linears, name
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
    model = _original(method)
    opt_cls, opt_values = expected["optimizer"]
    rule, base = expected["lr"]
    for batch_size, world_size in ((128, 1), (32, 8), (256, 3)):
        model.batch_size_per_device = batch_size
        _attach(model, world_size=world_size, num_devices=world_size)
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
    model = _small(method)
    for step in (0, 500):
        spy.calls.clear()
        _attach(model, global_step=step)
        model.training_step((_views(method), torch.zeros(4, dtype=torch.long), []), 0)
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
    _attach(model, global_step=500)
    model.training_step((_views(method), torch.zeros(4, dtype=torch.long), []), 0)
    assert [m for _, _, m in spy.calls] == [0.5, 0.5]


def test_moco_updates_keys_between_query_and_key_encoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: List[Tuple[str, float]] = []
    spy = _MomentumSpy(mocov2, monkeypatch)
    model = _small("mocov2")
    _attach(model)
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
    views = _views("mocov2")
    model.training_step((views, torch.zeros(4, dtype=torch.long), []), 0)
    assert [e for e, _ in events] == ["query", "update", "update", "key"]
    # Queries from the second view, keys from the first (shuffled: compare sums).
    assert events[0][1] == pytest.approx(float(views[1].sum()), rel=1e-5)
    assert events[3][1] == pytest.approx(float(views[0].sum()), rel=1e-5)


def test_dino_teacher_temperature_clipping_and_freezing_are_lightlys() -> None:
    expected = LIGHTLY_RESNET50["dino"]
    model = _small("dino")
    stub = _attach(model)
    calls: List[Dict[str, Any]] = []
    forward = model.criterion.forward

    def spy(*args: Any, **kwargs: Any) -> Tensor:
        calls.append(kwargs)
        return forward(*args, **kwargs)  # type: ignore[no-any-return]

    model.criterion.forward = spy  # type: ignore[method-assign]
    model.training_step((_views("dino"), torch.zeros(4, dtype=torch.long), []), 0)
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
    model = _original("swav")
    assert len(model.queues) == queue["count"]
    for bank in model.queues:
        assert isinstance(bank, MemoryBankModule)
        assert tuple(bank.size) == (queue["batches"] * 128, queue["dim"])
    model = _small("swav")
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
        _attach(model, current_epoch=epoch)
        model.training_step(
            (_views("swav"), torch.zeros(4, dtype=torch.long), []), batch_idx
        )
        assert (calls[-1] is not None) == used
        filled = any(
            not torch.equal(before[k], v) for k, v in model.queues.named_buffers()
        )
        assert filled == (epoch >= queue["start_epoch"])


def test_simclr_online_knn_is_lightlys() -> None:
    model = _original("simclr")
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
    model = _small("byol")
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


# -- lightly's weights, and the ER twin's --------------------------------------------
def _resnet50() -> nn.Module:
    resnet = resnet50()
    resnet.fc = nn.Identity()
    return resnet


def _lightly_build(method: str) -> Dict[str, nn.Module]:
    """The modules of lightly's ResNet-50 script, in the order it builds them."""
    out: Dict[str, nn.Module] = {"backbone": _resnet50()}
    if method == "simclr":
        out["projection_head"] = SimCLRProjectionHead()
        out["criterion"] = NTXentLoss(temperature=0.1, gather_distributed=True)
    elif method == "mocov2":
        out["projection_head"] = MoCoProjectionHead()
        out["key_backbone"] = copy.deepcopy(out["backbone"])
        out["key_projection_head"] = MoCoProjectionHead()
        out["criterion"] = NTXentLoss(
            temperature=0.2, memory_bank_size=(65536, 128), gather_distributed=True
        )
    elif method == "byol":
        out["projection_head"] = BYOLProjectionHead()
        out["prediction_head"] = BYOLPredictionHead()
        out["teacher_backbone"] = copy.deepcopy(out["backbone"])
        out["teacher_projection_head"] = BYOLProjectionHead()
        out["criterion"] = NegativeCosineSimilarity()
    elif method == "dino":
        out["projection_head"] = DINOProjectionHead()
        out["student_backbone"] = copy.deepcopy(out["backbone"])
        out["student_projection_head"] = DINOProjectionHead(freeze_last_layer=1)
        out["criterion"] = DINOLoss()
    else:
        out["projection_head"] = SwaVProjectionHead()
        out["prototypes"] = SwaVPrototypes(n_steps_frozen_prototypes=1)
        out["criterion"] = SwaVLoss(sinkhorn_gather_distributed=True)
    out["online_classifier"] = OnlineLinearClassifier(num_classes=1000)
    if method == "swav":
        out["queues"] = nn.ModuleList(
            [MemoryBankModule(size=(15 * 128, 128)) for _ in range(2)]
        )
    return out


def _head_inputs(model: Any, method: str) -> Dict[str, Tensor]:
    dims = {n: h[1][0][0] for n, h in LIGHTLY_RESNET50[method]["heads"].items()}
    return {name: torch.randn(8, dim) for name, dim in dims.items()}


@pytest.mark.parametrize("method", sorted(LIGHTLY_RESNET50))
def test_lightly_weights_and_er_twin_are_bitwise_equal(method: str) -> None:
    torch.manual_seed(0)
    reference = _lightly_build(method)
    original = _original(method)  # built under torch.manual_seed(0)
    for name, module in reference.items():
        assert_same_state(original.get_submodule(name), module)
    torch.manual_seed(0)
    er = bench.build_model(f"{method}_er", 128, 1000)
    assert type(er.criterion) is not type(original.criterion)
    assert type(er.criterion).__mro__[1:].__contains__(type(original.criterion))
    assert_same_state(er, original)
    assert len(unset_buffers(original)) == (1 if method == "simclr" else 0)
    # The same outputs: backbone and every head, in training mode.
    torch.manual_seed(1)
    images = torch.randn(2, 3, 64, 64)
    assert torch.equal(er.backbone(images), original.backbone(images))
    for name, x in _head_inputs(original, method).items():
        # SwAV's prototypes take the step that decides whether they are frozen.
        kwargs = {"step": 0} if name == "prototypes" else {}
        out_er = er.get_submodule(name)(x, **kwargs)
        out = original.get_submodule(name)(x, **kwargs)
        if isinstance(out, list):  # SwAV's prototypes: one tensor per set
            assert all(torch.equal(a, b) for a, b in zip(out_er, out, strict=True))
        else:
            assert torch.equal(out_er, out), name
    # The ER heads' meters use the loss's kappa or temperature by the rule.
    meters = {
        n: m.entropy_meter for n, m in er.named_modules() if hasattr(m, "entropy_meter")
    }
    assert meters or method == "mocov2"
    for meter in meters.values():
        if meter.support == "sphere":
            assert meter.kappa == (10.0 if method != "simclr" else 1 / 0.1)
        else:
            assert meter.temperature == 0.1


# -- runs ------------------------------------------------------------------------------
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
    args = _base_args(image_folder, tmp_path) + ["--methods", method]
    if method.endswith("_er"):
        args.append("--skip-linear-eval")  # the same code as the original's
    results = bench.main(args)

    (run_dir,) = (tmp_path / method).iterdir()
    pretrain = _csv_metrics(run_dir / "pretrain")
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

    knn = _csv_metrics(run_dir / "knn_eval")
    (knn_key,) = [k for k in knn if k.startswith("val_knn_top1")]
    assert 0.0 <= knn[knn_key][-1] <= 1.0
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == results[method]
    assert "knn_eval/val_knn_top1" in saved
    if not method.endswith("_er"):
        linear = _csv_metrics(run_dir / "linear_eval")
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
    bench.main(_base_args(image_folder, tmp_path / "on") + common)
    bench.main(
        _base_args(image_folder, tmp_path / "off") + common + ["--no-entropy-monitor"]
    )
    on = _checkpoint_state(tmp_path / "on", "byol_er")
    off = _checkpoint_state(tmp_path / "off", "byol_er")
    assert on.keys() == off.keys()
    assert all(torch.equal(on[k], off[k]) for k in on)
    (off_dir,) = (tmp_path / "off" / "byol_er").iterdir()
    assert not [k for k in _csv_metrics(off_dir / "pretrain") if "entropy/" in k]
    (on_dir,) = (tmp_path / "on" / "byol_er").iterdir()
    assert [k for k in _csv_metrics(on_dir / "pretrain") if "entropy/" in k]


def test_dino_freezes_last_layer_and_clips_gradients(
    image_folder: Path, tmp_path: Path
) -> None:
    pl.seed_everything(0, workers=True)
    model = bench.build_model("dino", 4, NUM_CLASSES, backbone="resnet18")
    start = _state(model.student_projection_head)
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
        bench.main(_base_args(image_folder, tmp_path) + ["--methods", method] + extra)
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
    args = _base_args(image_folder, tmp_path) + ["--methods", "byol", "--epochs", "0"]
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
        bench.main(_base_args(image_folder, log_dir) + ["--methods", "swav"])
    assert not log_dir.exists()
    # A folder that held something before the run is kept, as are its files.
    log_dir.mkdir()
    (log_dir / "keep.txt").write_text("x")
    with pytest.raises(RuntimeError, match="boom"):
        bench.main(_base_args(image_folder, log_dir) + ["--methods", "swav"])
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
    args = _base_args(image_folder, tmp_path / "logs")
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
    args = _base_args(image_folder, tmp_path / "logs")
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


class _MethodEntropy(nn.Module):
    """The entropy term of simclr_er's loss, built by the benchmark's build_model."""

    def __init__(self, gather_distributed: bool) -> None:
        super().__init__()
        model = bench.build_model(
            "simclr_er", 4, NUM_CLASSES, backbone="resnet18", knn_k=3
        )
        # lightly's losses gather over processes; with one process it does nothing.
        assert model.criterion.gather_distributed is True
        self.criterion = model.criterion

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        entropy: Tensor = self.criterion.forward_components(z0, z1).entropy
        return entropy


def test_er_entropy_on_gathered_batch_equals_single_process() -> None:
    torch.manual_seed(0)
    z0 = torch.randn(8, 128, dtype=torch.float64)
    z1 = torch.randn(8, 128, dtype=torch.float64)
    factory: Callable[..., nn.Module] = functools.partial(_MethodEntropy)
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
