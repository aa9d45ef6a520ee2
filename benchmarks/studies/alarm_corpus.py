"""A small collapse corpus for the monitor's alarm, in the mechanism study's format.

The collapse corpus format is the one of the mechanism study's pre-registration
(``benchmarks/studies/mechanism_preregistration.md``, "Collapse corpus: format",
version 1); this script makes a small one with the CIFAR-10 benchmark's own method
modules (``benchmarks/cifar/methods.py``), so that the alarm can be fitted and
validated before the mechanism study's corpus exists, and tested on a committed
sample. ``benchmarks/studies/alarm_validation.py`` reads either.

Every arm removes (or keeps) one anti-collapse device, as the mechanism study's arms
do: BYOL without predictor and at EMA 0, SimSiam without stop-gradient, DINO without
centering at EMA 0 and with centering at EMA 0, SwAV without Sinkhorn, SimCLR-ER at
entropy weight 0 (alignment only), and the intact methods and some ER versions as
healthy runs. Named in ``--arms`` only, the intact methods at 10 and 30 x lightly's
learning rate (``byol-lr10``, ..., ``dino-lr30``: ``LR_ARMS``), to look for
collapses the optimizer causes, and more removals (``REMOVAL_ARMS``: SimSiam without
predictor, the heads removed, removals at 10 x the learning rate). Fashion-MNIST at
28 px, the ``s2`` CNN (three stride-2 3x3 convolutions, 32-64-128 channels), batch
128, ``--steps`` optimizer steps at lightly's learning rate (held constant: one
epoch of lightly's per-epoch cosine schedule), one thread per run. Each run trains
under Lightning with :class:`lightly_er.monitoring.EntropyMonitor` at its defaults,
whose history on the training batches is kept beside the corpus
(``corpus/monitor/<run_id>/``, not part of the format), so the alarm can be replayed
on what the monitor itself measured.

Deviations from the mechanism study's protocol, for size: a training stream of
``--steps`` x 128 images (the seed's shuffles of the 60,000, one per pass), a
snapshot every ``--snapshot-every`` steps (not every tenth of the run), kNN (k = 20,
t = 0.1) with a bank of 5,000 training images against the first 2,000 test images,
no linear probe (``final_probe`` is null), lr constant. The held-out batch is the
format's: the last 512 test images, evaluation view, eval mode.

    python benchmarks/studies/alarm_corpus.py --out /work/corpus_mon
    python benchmarks/studies/alarm_corpus.py --out /work/corpus_mon --sample runs/corpus_sample

Rerunning skips finished runs. The sample keeps the first 32 held-out images of a
few runs (every snapshot); the committed sample of the mechanism study
(`tests/benchmarks/data/corpus_sample/`) is written by mechanism.py, not here.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lightly
import numpy as np
import pytorch_lightning as pl
import torch
from lightly.transforms.utils import IMAGENET_NORMALIZE
from lightly.utils.benchmarking import knn_predict
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms.v2 import functional as F2

from benchmarks.cifar.data import (
    ImageArrays,
    default_data_dir,
    eval_transform,
    load_fashion_mnist,
    train_transform,
)
from benchmarks.cifar.methods import (
    BYOL,
    DINO,
    SimCLR,
    SimSiam,
    SSLMethod,
    SwAV,
)
from benchmarks.studies.mechanism.corpus import head_array
from lightly_er.monitoring import EntropyMonitor
from lightly_er.utils.io import write_atomic

FORMAT = "lightly-er collapse corpus"
VERSION = 1
HELD_OUT_FIRST, HELD_OUT_SIZE = 9488, 512
KNN_K, KNN_T = 20, 0.1
BANK_SIZE, BANK_SEED, QUERIES = 5000, 0, 2000
IMAGE_SIZE = 28
MEAN = torch.tensor(IMAGENET_NORMALIZE["mean"]).view(3, 1, 1)
STD = torch.tensor(IMAGENET_NORMALIZE["std"]).view(3, 1, 1)
COLLAPSE_MARGIN, LEARN_MARGIN = 0.05, 0.02
"""The format's labels: collapsed below untrained - 0.05, learned from + 0.02."""


class S2Backbone(nn.Sequential):
    """Three stride-2 3x3 convolutions (32, 64, 128 channels), BN, ReLU, pooling."""

    def __init__(self) -> None:
        layers: List[nn.Module] = []
        for c_in, c_out in ((3, 32), (32, 64), (64, 128)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.AdaptiveAvgPool2d(1))
        super().__init__(*layers)


class SimSiamWithoutStopGradient(SimSiam):
    """SimSiam whose projection is not detached: both branches carry gradient."""

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        z = self.projection_head(self.features(x))
        p = self.prediction_head(z)
        return z, p


@dataclass(frozen=True)
class Arm:
    """One intervention of a method at one entropy weight (None: lightly's loss)."""

    arm: str
    method: str
    weight: Optional[float]
    ema: Optional[float] = None
    options: Dict[str, Any] = field(default_factory=dict)
    lr_scale: float = 1.0
    no_predictor: bool = False
    no_stop_gradient: bool = False
    no_projector: bool = False

    def run_id(self, steps: int, batch_size: int, seed: int) -> str:
        w = "" if self.weight is None else f"_w{int(self.weight)}"
        return f"{self.arm}{w}_b{batch_size}_s{steps}_seed{seed}"


ARMS: Tuple[Arm, ...] = (
    Arm("byol", "byol", 0.0, 0.99),
    Arm("byol-nopred", "byol", 0.0, 0.99, no_predictor=True),
    Arm("byol-ema0", "byol", 0.0, 0.0),
    Arm("simsiam", "simsiam", 0.0),
    Arm("simsiam-nosg", "simsiam", 0.0, no_stop_gradient=True),
    Arm("dino", "dino", 0.0, 0.99, {"centering": True}),
    Arm("dino-nocenter", "dino", 1.0, 0.99, {"centering": False}),
    Arm("dino-ema0", "dino", 0.0, 0.0, {"centering": True}),
    Arm("dino-nocenter-ema0", "dino", 0.0, 0.0, {"centering": False}),
    Arm("swav", "swav", 0.0, None, {"use_sinkhorn": True}),
    Arm("swav-nosinkhorn", "swav", 0.0, None, {"use_sinkhorn": False}),
    Arm("swav-nosinkhorn", "swav", 1.0, None, {"use_sinkhorn": False}),
    Arm("simclr", "simclr", None),
    Arm("simclr-er", "simclr", 0.0),
    Arm("simclr-er", "simclr", 1.0),
)
"""The arms, in run order (healthy and device-removed runs of every method)."""

LR_ARMS: Tuple[Arm, ...] = tuple(
    Arm(f"{method}-lr{scale}", method, None, ema, lr_scale=float(scale))
    for scale in (10, 30)
    for method, ema in (
        ("byol", 0.99),
        ("simsiam", None),
        ("simclr", None),
        ("swav", None),
        ("dino", 0.99),
    )
)
"""Intact methods (lightly's losses) at 10 and 30 x lightly's learning rate: a
collapse the optimizer causes, not a removed device. Run only when named in
``--arms``."""

REMOVAL_ARMS: Tuple[Arm, ...] = (
    Arm("simsiam-nopred", "simsiam", None, no_predictor=True),
    Arm(
        "simsiam-nosg-nopred", "simsiam", None, no_predictor=True, no_stop_gradient=True
    ),
    Arm("byol-nopred-ema0", "byol", None, 0.0, no_predictor=True),
    Arm("simsiam-nosg-lr10", "simsiam", None, lr_scale=10.0, no_stop_gradient=True),
    Arm("byol-nopred-lr10", "byol", None, 0.99, lr_scale=10.0, no_predictor=True),
    Arm("swav-nosinkhorn-lr10", "swav", 0.0, None, {"use_sinkhorn": False}, 10.0),
    Arm("simsiam-noheads", "simsiam", None, no_predictor=True, no_projector=True),
    Arm(
        "simsiam-nosg-noheads",
        "simsiam",
        None,
        no_predictor=True,
        no_stop_gradient=True,
        no_projector=True,
    ),
    Arm(
        "swav-nosinkhorn-noproj",
        "swav",
        0.0,
        None,
        {"use_sinkhorn": False},
        no_projector=True,
    ),
)
"""More device removals, for collapses outside DINO: SimSiam without predictor (the
collapse of Chen & He, 2021, Table 1), without predictor and stop-gradient, BYOL
without predictor at EMA 0, three removals at 10 x lightly's learning rate, and
three without the projection head too (the loss, or SwAV's prototypes, on the
backbone's features directly), so that no head is left to absorb a collapse. Run
only when named in ``--arms``."""

METHODS: Dict[str, type[SSLMethod]] = {
    "byol": BYOL,
    "simsiam": SimSiam,
    "dino": DINO,
    "swav": SwAV,
    "simclr": SimCLR,
}


# -- data ------------------------------------------------------------------------------
def normalise(u8: Tensor) -> Tensor:
    """uint8 gray views (..., H, W) -> lightly's normalized RGB tensors (..., 3, H, W).

    torchvision's v2 functions, which lightly's transforms end with: the same
    float32 operations, so the same bits.
    """
    grey = u8.unsqueeze(-3).expand(*u8.shape[:-2], 3, *u8.shape[-2:]).contiguous()
    x = F2.to_dtype(grey, torch.float32, scale=True)
    out: Tensor = F2.normalize(x, IMAGENET_NORMALIZE["mean"], IMAGENET_NORMALIZE["std"])
    return out


def stream_order(n_train: int, images: int, seed: int) -> Tensor:
    """The training images of the stream: one shuffle of the n_train per pass.

    The first pass is the seed's ``randperm``, so a stream of at most one pass is the
    one earlier versions wrote; a longer one draws a new shuffle per pass (before
    2026-12-02 the rows past the first pass were left unwritten).
    """
    generator = _generator(seed)
    passes = -(-images // n_train)
    order = torch.cat(
        [torch.randperm(n_train, generator=generator) for _ in range(passes)]
    )
    return order[:images]


def view_stream(
    data: ImageArrays, method: str, seed: int, images: int, cache: Path
) -> Tensor:
    """The training views of (method, seed): uint8 (images, 2, 28, 28), cached.

    lightly's transform of the method on each image of the seed's shuffle, stored as
    the gray channel on the 1/255 grid; :func:`normalize` gives back lightly's
    tensors bit for bit (checked here on every view).
    """
    path = cache / f"{method}_seed{seed}_{images}.pt"
    if path.exists():
        stream: Tensor = torch.load(path)
        return stream
    order = stream_order(len(data.train_images), images, seed)
    transform = train_transform(method, IMAGE_SIZE)
    random.seed(seed)
    torch.manual_seed(seed)
    out = torch.empty(images, 2, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    for i, index in enumerate(order.tolist()):
        views = transform(Image.fromarray(data.train_images[index]))
        for v, view in enumerate(views[:2]):
            grey = torch.round((view * STD + MEAN) * 255).clamp(0, 255).to(torch.uint8)
            if not torch.equal(normalise(grey[0]), view):
                raise RuntimeError(
                    f"view {i} of {method} is not gray on the 1/255 grid"
                )
            out[i, v] = grey[0]
    cache.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(out, buffer)
    write_atomic(path, buffer.getvalue())
    return out


class StreamBatches(Dataset[Any]):
    """Step s of the run reads views [s * B, (s + 1) * B) of the stream."""

    def __init__(self, stream: Tensor, batch_size: int) -> None:
        self.stream = stream
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.stream) // self.batch_size

    def __getitem__(self, step: int) -> Any:
        rows = self.stream[step * self.batch_size : (step + 1) * self.batch_size]
        views = normalise(rows)
        return [views[:, 0], views[:, 1]], torch.zeros(len(rows), dtype=torch.long), 0


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def eval_images(images: np.ndarray) -> Tensor:
    transform = eval_transform(IMAGE_SIZE)
    return torch.stack([transform(Image.fromarray(image)) for image in images])


@dataclass
class EvalData:
    bank: Tensor
    bank_labels: Tensor
    queries: Tensor
    query_labels: Tensor
    held_out: Tensor
    held_out_index: np.ndarray
    held_out_labels: np.ndarray


def eval_data(data: ImageArrays) -> EvalData:
    order = torch.randperm(len(data.train_images), generator=_generator(BANK_SEED))
    bank_index = order[:BANK_SIZE].numpy()
    held = np.arange(HELD_OUT_FIRST, HELD_OUT_FIRST + HELD_OUT_SIZE)
    return EvalData(
        bank=eval_images(data.train_images[bank_index]),
        bank_labels=torch.from_numpy(data.train_labels[bank_index]),
        queries=eval_images(data.test_images[:QUERIES]),
        query_labels=torch.from_numpy(data.test_labels[:QUERIES]),
        held_out=eval_images(data.test_images[held]),
        held_out_index=held.astype(np.int64),
        held_out_labels=data.test_labels[held].astype(np.int64),
    )


# -- snapshots -------------------------------------------------------------------------
@torch.no_grad()
def features(model: SSLMethod, images: Tensor, batch: int = 1000) -> Tensor:
    return torch.cat(
        [model.features(images[i : i + batch]) for i in range(0, len(images), batch)]
    )


@torch.no_grad()
def knn_top1(model: SSLMethod, data: EvalData) -> float:
    bank = nn.functional.normalize(features(model, data.bank), dim=1)
    query = nn.functional.normalize(features(model, data.queries), dim=1)
    predicted = knn_predict(query, bank.T, data.bank_labels, 10, KNN_K, KNN_T)
    return float((predicted[:, 0] == data.query_labels).float().mean())


@torch.no_grad()
def heads(model: SSLMethod, x: Tensor) -> Dict[str, Tensor]:
    """The outputs of every head on x, keyed as the corpus format names them."""
    f = model.features(x)
    out = {"backbone": f}
    if isinstance(model, BYOL):
        z = model.projection_head(f)
        out["projection"] = z
        if not isinstance(model.prediction_head, nn.Identity):
            out["prediction"] = model.prediction_head(z)
        target = model.backbone_momentum(x).flatten(start_dim=1)
        out["target_backbone"] = target
        out["target_projection"] = model.projection_head_momentum(target)
    elif isinstance(model, SimSiam):
        z = model.projection_head(f)
        out["projection"] = z
        out["prediction"] = model.prediction_head(z)
    elif isinstance(model, SimCLR):
        out["projection"] = model.projection_head(f)
    elif isinstance(model, DINO):
        out["projection"] = nn.functional.normalize(model.head.layers(f), dim=-1)
        out["student_logits"] = model.head(f)
        teacher = model.teacher_backbone(x).flatten(start_dim=1)
        out["teacher_backbone"] = teacher
        out["teacher_logits"] = model.teacher_head(teacher)
    elif isinstance(model, SwAV):
        z = nn.functional.normalize(model.projection_head(f), dim=1)
        out["projection"] = z
        out["prototype_scores"] = model.prototypes(z)
    return out


class Snapshots(pl.Callback):
    """kNN and every head's outputs on the held-out batch, every ``every`` steps.

    Listed before the monitor, so that its evaluation forwards run before the
    monitor's hooks start capturing the step.
    """

    def __init__(self, data: EvalData, every: int, steps: int) -> None:
        self.data, self.every, self.steps = data, every, steps
        self.records: List[Dict[str, Any]] = []
        self.losses: List[Tuple[float, float, float]] = []

    def _snapshot(self, model: SSLMethod, step: int) -> None:
        was_training = model.training
        model.eval()
        record: Dict[str, Any] = {"step": step, "knn_top1": knn_top1(model, self.data)}
        record["heads"] = {
            k: head_array(k, v.float().numpy())
            for k, v in heads(model, self.data.held_out).items()
        }
        if isinstance(model, DINO):
            center = model.criterion.center
            assert isinstance(center, Tensor)
            record["center"] = center.reshape(-1).float().numpy()
        losses = np.array(self.losses, dtype=np.float64).reshape(-1, 3)
        means = losses.mean(axis=0) if len(losses) else np.full(3, np.nan)
        (
            record["train_loss"],
            record["train_entropy"],
            record["train_reconstruction"],
        ) = means.tolist()
        self.losses = []
        self.records.append(record)
        model.train(was_training)

    def on_train_batch_start(self, trainer: pl.Trainer, model: Any, *args: Any) -> None:
        if trainer.global_step % self.every == 0:
            self._snapshot(model, trainer.global_step)

    def on_train_batch_end(
        self, trainer: pl.Trainer, model: Any, outputs: Any, *args: Any
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        components = getattr(model.criterion, "last_components", None)
        entropy = reconstruction = float("nan")
        if components is not None:
            entropy = float(components.entropy)
            reconstruction = float(components.reconstruction)
        self.losses.append((float(loss), entropy, reconstruction))

    def on_train_end(self, trainer: pl.Trainer, model: Any) -> None:
        if not self.records or self.records[-1]["step"] != trainer.global_step:
            self._snapshot(model, trainer.global_step)


# -- one run ---------------------------------------------------------------------------
def build(arm: Arm, seed: int, steps: int, batch_size: int) -> SSLMethod:
    torch.manual_seed(seed)
    # Built first: every arm of a seed starts from the same backbone.
    backbone = S2Backbone()
    cls = METHODS[arm.method]
    if arm.no_stop_gradient:
        if arm.method != "simsiam":
            raise ValueError(f"arm {arm.arm!r}: no_stop_gradient is for SimSiam only")
        cls = SimSiamWithoutStopGradient
    placeholder: DataLoader[Any] = DataLoader(
        TensorDataset(torch.zeros(1, 3, 1, 1), torch.zeros(1, dtype=torch.long))
    )
    kwargs: Dict[str, Any] = {}
    if arm.ema is not None:
        kwargs["ema"] = arm.ema
    if arm.weight is not None:
        kwargs.update(
            objective="er",
            er_kwargs={"entropy_weight": arm.weight, **arm.options},
        )
    model = cls(
        backbone, 128, placeholder, 10, max_epochs=1, batch_size=batch_size, **kwargs
    )
    if arm.no_predictor:
        # The projection goes to the loss in place of the prediction.
        model.prediction_head = nn.Identity()
    if arm.no_projector:
        # The backbone's features go to the predictor, prototypes or loss directly.
        if not arm.no_predictor and arm.method in ("byol", "simsiam"):
            raise ValueError(f"arm {arm.arm!r}: no_projector needs no_predictor")
        model.projection_head = nn.Identity()
        if arm.method not in ("simsiam", "swav"):
            raise ValueError(f"arm {arm.arm!r}: no_projector is for SimSiam and SwAV")
    if arm.lr_scale != 1.0:
        scale_lr(model, arm.lr_scale)
    return model


def scale_lr(model: SSLMethod, scale: float) -> None:
    """Multiplies every learning rate the model's optimizers start from by scale."""
    # The benchmark's methods return ([optimizer], [scheduler]).
    configure: Any = model.configure_optimizers

    def scaled() -> Any:
        optimisers, schedulers = configure()
        for optimiser in optimisers:
            for group in optimiser.param_groups:
                group["lr"] *= scale
                if "initial_lr" in group:  # set by the scheduler
                    group["initial_lr"] *= scale
        for scheduler in schedulers:
            scheduler.base_lrs = [lr * scale for lr in scheduler.base_lrs]
        return optimisers, schedulers

    model.configure_optimizers = scaled  # type: ignore[method-assign]


def loss_record(model: SSLMethod) -> Dict[str, Any]:
    criterion = model.criterion
    return {
        "class": type(criterion).__name__,
        "student_temp": getattr(criterion, "student_temp", None),
        "teacher_temp": getattr(criterion, "teacher_temp", None),
        "centering": getattr(criterion, "centering", True)
        if isinstance(model, DINO)
        else None,
        "center_momentum": getattr(criterion, "center_momentum", None),
        "kappa": getattr(criterion, "kappa", None),
        "sinkhorn": getattr(criterion, "use_sinkhorn", True)
        if isinstance(model, SwAV)
        else None,
        "epsilon": getattr(criterion, "sinkhorn_epsilon", None),
        "temperature": getattr(criterion, "temperature", None),
    }


def label(untrained: float, final: float) -> str:
    if final < untrained - COLLAPSE_MARGIN:
        return "collapsed"
    if final >= untrained + LEARN_MARGIN:
        return "learned"
    return "no gain"


def run(
    arm: Arm,
    seed: int,
    args: argparse.Namespace,
    data: ImageArrays,
    evaluation: EvalData,
    corpus: Path,
) -> Dict[str, Any]:
    run_id = arm.run_id(args.steps, args.batch_size, seed)
    start = time.perf_counter()
    stream = view_stream(
        data, arm.method, seed, args.steps * args.batch_size, args.out / "streams"
    )
    model = build(arm, seed, args.steps, args.batch_size)
    snapshots = Snapshots(evaluation, args.snapshot_every, args.steps)
    monitor = EntropyMonitor(log_dir=corpus / "monitor" / run_id)
    trainer = pl.Trainer(
        max_steps=args.steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[snapshots, monitor],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    loader = DataLoader(StreamBatches(stream, args.batch_size), batch_size=None)
    trainer.fit(model, loader)
    records = snapshots.records
    knn = np.array([r["knn_top1"] for r in records], dtype=np.float32)
    steps = np.array([r["step"] for r in records], dtype=np.int64)
    arrays: Dict[str, np.ndarray] = {
        "step": steps,
        "knn_top1": knn,
        "image_index": evaluation.held_out_index,
        "label": evaluation.held_out_labels,
    }
    for key in ("train_loss", "train_entropy", "train_reconstruction"):
        arrays[key] = np.array([r[key] for r in records], dtype=np.float32)
    for key in records[0]["heads"]:
        arrays[key] = np.stack([r["heads"][key] for r in records])
    if "center" in records[0]:
        arrays["center"] = np.stack([r["center"] for r in records]).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    write_atomic(corpus / f"{run_id}.npz", buffer.getvalue())
    untrained, final = float(knn[0]), float(knn[-1])
    below = [int(s) for s, k in zip(steps, knn) if k < untrained - COLLAPSE_MARGIN]  # noqa: B905
    return {
        "run_id": run_id,
        "file": f"{run_id}.npz",
        "arm": arm.arm,
        "method": arm.method,
        "entropy_weight": arm.weight,
        "ema": arm.ema,
        "lr_scale": arm.lr_scale,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "seed": seed,
        "untrained_knn": untrained,
        "final_knn": final,
        "final_probe": None,
        "label": label(untrained, final),
        "first_below_step": below[0] if below else None,
        "heads": {k: int(arrays[k].shape[-1]) for k in records[0]["heads"]},
        "loss": loss_record(model),
        "lightly": getattr(lightly, "__version__", None),
        "torch": torch.__version__,
        "wall_s": round(time.perf_counter() - start, 1),
        "monitor": {
            "history": f"monitor/{run_id}/{EntropyMonitor.CSV_NAME}",
            "every_n_steps": monitor.every_n_steps,
            "alarms": [
                {"step": a.step, "module": a.module, "metric": a.metric}
                for a in monitor.alarms
            ],
        },
    }


def read_index(corpus: Path) -> Dict[str, Any]:
    path = corpus / "index.json"
    if path.exists():
        index: Dict[str, Any] = json.loads(path.read_text())
        return index
    return {
        "format": FORMAT,
        "version": VERSION,
        "held_out": {
            "dataset": "fashion-mnist",
            "split": "test",
            "first": HELD_OUT_FIRST,
            "size": HELD_OUT_SIZE,
            "view": "eval",
            "mode": "eval",
        },
        "knn": {
            "k": KNN_K,
            "t": KNN_T,
            "bank_size": BANK_SIZE,
            "bank_seed": BANK_SEED,
            "queries": QUERIES,
        },
        "runs": [],
    }


def write_index(corpus: Path, index: Dict[str, Any]) -> None:
    write_atomic(corpus / "index.json", json.dumps(index, indent=1) + "\n")


def sample(corpus: Path, out: Path, images: int = 32, per_method: int = 2) -> None:
    """A small copy of the corpus: the first ``images`` held-out images of a few runs.

    Per method, the first seed's device-removed arm and healthy arm (their first
    ``per_method`` runs in index order among collapsed and learned runs).
    """
    index = read_index(corpus)
    chosen: List[Dict[str, Any]] = []
    for method in METHODS:
        runs = [r for r in index["runs"] if r["method"] == method]
        seed = min(r["seed"] for r in runs) if runs else None
        runs = [r for r in runs if r["seed"] == seed]
        for wanted in ("collapsed", "learned"):
            chosen += [r for r in runs if r["label"] == wanted][: per_method // 2]
    out.mkdir(parents=True, exist_ok=True)
    for entry in chosen:
        with np.load(corpus / entry["file"]) as npz:
            arrays = {
                k: (npz[k][:, :images] if npz[k].ndim == 3 else npz[k])
                for k in npz.files
            }
        arrays["image_index"] = arrays["image_index"][:images]
        arrays["label"] = arrays["label"][:images]
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        write_atomic(out / entry["file"], buffer.getvalue())
    small = dict(index, runs=chosen)
    small["held_out"] = dict(index["held_out"], size=images)
    small["sample_of"] = "benchmarks/studies/alarm_corpus.py"
    write_index(out, small)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="working folder")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--snapshot-every", type=int, default=25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--arms", nargs="*", default=None, help="arm ids (default: all)"
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--sample", type=Path, default=None, help="only write a sample of the corpus"
    )
    args = parser.parse_args(argv)
    corpus = args.out / "corpus"
    if args.sample is not None:
        sample(corpus, args.sample)
        return 0
    torch.set_num_threads(1)
    data = load_fashion_mnist(args.data_dir or default_data_dir("fashion-mnist"))
    evaluation = eval_data(data)
    arms = [a for a in ARMS if args.arms is None or a.arm in args.arms] + [
        a
        for a in LR_ARMS + REMOVAL_ARMS
        if args.arms is not None and a.arm in args.arms
    ]
    for seed in args.seeds:
        for arm in arms:
            index = read_index(corpus)
            run_id = arm.run_id(args.steps, args.batch_size, seed)
            if any(r["run_id"] == run_id for r in index["runs"]):
                continue
            entry = run(arm, seed, args, data, evaluation, corpus)
            index = read_index(corpus)
            index["runs"].append(entry)
            write_index(corpus, index)
            print(
                f"{run_id}: kNN {entry['untrained_knn']:.3f} -> "
                f"{entry['final_knn']:.3f} ({entry['label']}), "
                f"{entry['wall_s']:.0f} s, alarms "
                f"{[(a['module'], a['step']) for a in entry['monitor']['alarms']]}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
