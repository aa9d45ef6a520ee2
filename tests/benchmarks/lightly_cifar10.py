"""lightly's CIFAR-10 benchmark settings, transcribed: the oracle of the tests.

:data:`LIGHTLY_CIFAR10` transcribes lightly's
``docs/source/getting_started/benchmarks/cifar10_benchmark.py`` (lightly commit
e8d317f, 2026-08-21; the library at 1.6.0) per method. The tests build each original
module of :mod:`benchmarks.cifar.methods` and check it against these values, so a drift
from lightly fails a test. What the benchmark does differently on purpose is
:data:`benchmarks.cifar.differences.DIFFERENCES`.
"""

from __future__ import annotations

from typing import Any, Dict

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
and dimensions), loss (class and values), optimizer (class, base lr, whether it is
scaled by batch_size / 128, momentum, weight decay; a cosine schedule over the epochs
for all), trained modules, the constant EMA coefficient, split batch norm, and
MoCo's key shuffle. Shared by all: lightly's CIFAR ResNet-18 (``ResNetGenerator``,
512 features), batch size 128, 200 epochs, kNN k=200 t=0.1 on ImageNet-normalized
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
