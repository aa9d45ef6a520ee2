"""lightly's CIFAR-10 benchmark settings, and every deliberate difference from them.

:data:`LIGHTLY_CIFAR10` transcribes lightly's
``docs/source/getting_started/benchmarks/cifar10_benchmark.py`` (lightly commit
e8d317f, 2026-08-21; the library at 1.6.0) per method. The tests build each original
module of :mod:`benchmarks.cifar.methods` and check it against these values, so
a drift from lightly fails a test. :data:`DIFFERENCES` is the one list of what the
benchmark does differently, each an option that is off by default (or a fact of the
machine it runs on); ``benchmarks/README.md`` renders it as a table, and a test keeps
the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

LIGHTLY_SOURCE = (
    "lightly-ai/lightly docs/source/getting_started/benchmarks/cifar10_benchmark.py "
    "at e8d317f (2026-08-21), with lightly 1.6.0"
)

LIGHTLY_CIFAR10: Dict[str, Dict[str, Any]] = {
    "simclr": {
        "transform": ("SimCLRTransform", {"cj_strength": 0.5, "gaussian_blur": 0.0}),
        "heads": {"projection_head": ("SimCLRProjectionHead", (512, 512, 128))},
        "loss": ("NTXentLoss", {"temperature": 0.5, "memory_bank_size": (0,)}),
        "optimizer": (
            "SGD",
            {"lr": 6e-2, "scaled": True, "momentum": 0.9, "weight_decay": 5e-4},
        ),
        "trained": ("backbone", "projection_head"),
        "ema": None,
        "num_splits": 0,
    },
    "moco": {
        "transform": ("SimCLRTransform", {"cj_strength": 0.5, "gaussian_blur": 0.0}),
        "heads": {"projection_head": ("MoCoProjectionHead", (512, 512, 128))},
        "loss": ("NTXentLoss", {"temperature": 0.1, "memory_bank_size": (4096, 128)}),
        "optimizer": (
            "SGD",
            {"lr": 6e-2, "scaled": True, "momentum": 0.9, "weight_decay": 5e-4},
        ),
        "trained": ("backbone", "projection_head"),
        "ema": 0.99,
        "num_splits": 8,
        "batch_shuffle": True,
    },
    "byol": {
        "transform": ("BYOLTransform", {"gaussian_blur": 0.0}),
        "heads": {
            "projection_head": ("BYOLProjectionHead", (512, 1024, 256)),
            "prediction_head": ("BYOLPredictionHead", (256, 1024, 256)),
        },
        "loss": ("NegativeCosineSimilarity", {}),
        "optimizer": (
            "SGD",
            {"lr": 6e-2, "scaled": True, "momentum": 0.9, "weight_decay": 5e-4},
        ),
        "trained": ("backbone", "projection_head", "prediction_head"),
        "ema": 0.99,
        "num_splits": 0,
    },
    "simsiam": {
        "transform": ("SimSiamTransform", {"gaussian_blur": 0.0}),
        "heads": {
            "projection_head": ("ProjectionHead", (512, 2048, 2048)),
            "prediction_head": ("SimSiamPredictionHead", (2048, 512, 2048)),
        },
        "loss": ("NegativeCosineSimilarity", {}),
        "optimizer": (
            "SGD",
            {"lr": 6e-2, "scaled": False, "momentum": 0.9, "weight_decay": 5e-4},
        ),
        "trained": ("backbone", "projection_head", "prediction_head"),
        "ema": None,
        "num_splits": 0,
    },
    "dino": {
        "transform": (
            "DINOTransform",
            {
                "n_local_views": 0,
                "cj_strength": 0.5,
                "gaussian_blur": (0, 0, 0),
                "solarization_prob": 0.2,
            },
        ),
        "heads": {"head": ("DINOProjectionHead", (512, 2048, 256, 2048))},
        "loss": (
            "DINOLoss",
            {
                "output_dim": 2048,
                "teacher_temp": 0.04,
                "student_temp": 0.1,
                "center_momentum": 0.9,
            },
        ),
        "optimizer": (
            "SGD",
            {"lr": 6e-2, "scaled": True, "momentum": 0.9, "weight_decay": 5e-4},
        ),
        "trained": ("backbone", "head"),
        "ema": 0.99,
        "num_splits": 0,
    },
    "swav": {
        "transform": (
            "SwaVTransform",
            {
                "crop_counts": 2,
                "crop_min_scales": 0.14,
                "crop_max_scales": 1.0,
                "cj_strength": 0.5,
                "gaussian_blur": 0.0,
            },
        ),
        "heads": {
            "projection_head": ("SwaVProjectionHead", (512, 512, 128)),
            "prototypes": ("SwaVPrototypes", (128, 512)),
        },
        "loss": (
            "SwaVLoss",
            {"temperature": 0.1, "sinkhorn_epsilon": 0.05, "sinkhorn_iterations": 3},
        ),
        "optimizer": ("Adam", {"lr": 1e-3, "scaled": True, "weight_decay": 1e-6}),
        "trained": ("backbone", "projection_head", "prototypes"),
        "ema": None,
        "num_splits": 0,
    },
}
"""Per method: augmentation (class and the arguments lightly passes), heads (class
and dimensions), loss (class and values), optimiser (class, base lr, whether it is
scaled by batch_size / 128, momentum, weight decay; a cosine schedule over the epochs
for all), trained modules, the constant EMA coefficient, split batch norm, and
MoCo's key shuffle. Shared by all: lightly's CIFAR ResNet-18 (``ResNetGenerator``,
512 features), batch size 128, 200 epochs, kNN k=200 t=0.1 on ImageNet-normalised
test images, precision 32-true, no sync batch norm, no gathering."""

LIGHTLY_SHARED: Dict[str, Any] = {
    "backbone": "resnet18",
    "batch_size": 128,
    "epochs": 200,
    "knn_k": 200,
    "knn_t": 0.1,
    "precision": "32-true",
    "emas": [0.99],
    "dataset": "cifar10",
}


@dataclass(frozen=True)
class Difference:
    """One deliberate difference between our benchmark and lightly's script."""

    setting: str
    lightly: str
    ours: str
    why: str


DIFFERENCES: Tuple[Difference, ...] = (
    Difference(
        "Dataset (`--dataset`)",
        "CIFAR-10 from image folders",
        "CIFAR-10 through torchvision (default); Fashion-MNIST or digits as options",
        "Same images for CIFAR-10. The CPU machine reaches no CIFAR-10, so our "
        "runs use Fashion-MNIST (grey images repeated to 3 channels), which is "
        "named in every table",
    ),
    Difference(
        "Image size (`--image-size`)",
        "32",
        "the dataset's (32 CIFAR-10, 28 Fashion-MNIST, 16 digits)",
        "Fashion-MNIST and digits are smaller; the kNN images are resized to it",
    ),
    Difference(
        "Backbone (`--backbone`)",
        "CIFAR ResNet-18",
        "CIFAR ResNet-18 (default); `small`, a 3-layer CNN, as an option",
        "A ResNet-18 trains at 20-50 images/s on the 2-core CPU; the small CNN at "
        "about 2,000. MoCo's small CNN keeps the split batch norm",
    ),
    Difference(
        "Training and kNN images (`--train-subset`, `--test-subset`)",
        "all",
        "all (default); a seeded subset as an option",
        "CPU budget",
    ),
    Difference(
        "Teacher EMA (`--ema`)",
        "0.99 constant",
        "0.99 constant (default); other constants as an option",
        "The stability sweeps vary it",
    ),
    Difference(
        "Epochs, batch size, seeds (`--epochs`, `--batch-sizes`, `--seeds`)",
        "200, 128 (and 512), 1 run",
        "200, 128 (default); any as options",
        "The sweeps vary them",
    ),
    Difference(
        "Precision (`--precision`)",
        "32-true (Lightning's default)",
        "32-true (default); `16-mixed`, `bf16-mixed` or `auto` as options",
        "Mixed precision for GPU runs, named in their tables",
    ),
    Difference(
        "Several devices (`--devices N`)",
        "1 device; an in-script flag switches to DDP with the batch split",
        "1 device (default); with N > 1: DDP, the batch size is per device, "
        "the losses gather over devices for both objectives, sync batch norm on CUDA",
        "So that the ER entropy of a DDP run sees the global batch",
    ),
    Difference(
        "kNN neighbours (`--knn-k`, `--knn-t`)",
        "k=200, t=0.1",
        "k=200, t=0.1 (default); the smoke preset uses k=20",
        "The digits' kNN bank holds 1,437 images",
    ),
    Difference(
        "MoCo memory bank",
        "`memory_bank_size=4096`",
        "`memory_bank_size=(4096, 128)`",
        "The same bank: lightly >= 1.6 rejects an int size and needs the "
        "feature dimension",
    ),
    Difference(
        "SwAV crop scales",
        "`crop_max_scales` left at its default `(1.0, 0.14)` for one crop size",
        "`crop_max_scales=[1.0]`",
        "The same crops: lightly < 1.6 used the first value for one crop size, "
        "lightly >= 1.6 rejects two values for one size",
    ),
    Difference(
        "Logger and checkpoints",
        "TensorBoard, a checkpoint per epoch",
        "CSV, `last.ckpt` per epoch, a JSON record per run",
        "A sweep resumes from them; no effect on training",
    ),
    Difference(
        "Per-epoch entropy metrics",
        "none",
        "ER entropy, collapse score and RankMe of a fixed held-out batch",
        "Measured in eval mode without gradient; no effect on training",
    ),
    Difference(
        "ER runs only (`--kappa`, `--entropy-weight`, `--estimator`)",
        "-",
        "kappa by the rule (1 / temperature for SimCLR and MoCo, 10 otherwise), "
        "weight 1, plug-in estimator",
        "The paper's objective with the authors' reference defaults; docs/kappa.md",
    ),
)
"""Every deliberate difference from lightly's CIFAR-10 benchmark."""


def differences_markdown() -> str:
    """DIFFERENCES as the Markdown table of benchmarks/README.md."""
    lines = [
        "| Setting | lightly's script | Ours | Why |",
        "|---|---|---|---|",
    ]
    for d in DIFFERENCES:
        lines.append(f"| {d.setting} | {d.lightly} | {d.ours} | {d.why} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "DIFFERENCES",
    "Difference",
    "LIGHTLY_CIFAR10",
    "LIGHTLY_SHARED",
    "LIGHTLY_SOURCE",
    "differences_markdown",
]
