"""lightly's ImageNet benchmark settings, transcribed: the oracle of the tests.

:data:`LIGHTLY_RESNET50` and :data:`LIGHTLY_VITB16` transcribe lightly's
``benchmarks/imagenet/resnet50/<method>.py`` and ``benchmarks/imagenet/vitb16/dino.py``
(:data:`LIGHTLY_SOURCE`) per method; :data:`LIGHTLY_RESNET50_CLI`,
:data:`LIGHTLY_VITB16_CLI` and :data:`LIGHTLY_EVALUATION` their ``main.py`` flags and
evaluation files. The tests build the original modules, parsers and classifiers of
``benchmarks/imagenet`` and check them against these values, so a drift from lightly
fails a test. What our scripts do differently on purpose is
:data:`benchmarks.imagenet.differences.DIFFERENCES`.

Notation. A head is ``(class, ((in, out), ...), kwargs)``: its linear layers in order
and the keyword arguments lightly passes beyond the sizes. ``"lr"`` is ``(rule,
base)``: ``"linear"`` means ``base * batch_size_per_device * world_size / 256``,
``"sqrt"`` means ``base * sqrt(batch_size_per_device * world_size)``. ``"end_value"``
is the end factor of ``CosineWarmupScheduler`` (a number, or ``("linear", base)``
scaled like the learning rate). ``"ema"`` is ``None`` (no teacher), ``("constant",
m)`` or ``("cosine", start, end)`` over the training steps. ``"teachers"`` says how
each EMA copy starts: ``"copy:<module>"`` (a deep copy) or ``"fresh"`` (its own
initialization).
"""

from __future__ import annotations

from typing import Any, Dict

LIGHTLY_SOURCE = (
    "lightly-ai/lightly benchmarks/imagenet/resnet50 and benchmarks/imagenet/vitb16 "
    "at e8d317f (2026-08-21), with lightly 1.6.0"
)

_GROUPS = ("{name}", "{name}_no_weight_decay", "online_classifier")


def _dino_heads(input_dim: int, norm_last_layer: bool) -> Dict[str, Any]:
    """The DINOProjectionHead pair of both DINO scripts: the teacher's, then the
    student's with its last layer frozen in the first epoch; 65536 prototypes."""
    layers = ((input_dim, 2048), (2048, 2048), (2048, 256), (256, 65536))
    return {
        name: (
            "DINOProjectionHead",
            layers,
            {"freeze_last_layer": frozen, "norm_last_layer": norm_last_layer},
        )
        for name, frozen in (("projection_head", -1), ("student_projection_head", 1))
    }


_DINO: Dict[str, Any] = {
    "loss": (
        "DINOLoss",
        {
            "output_dim": 65536,
            "warmup_teacher_temp": 0.04,
            "teacher_temp": 0.04,
            "warmup_teacher_temp_epochs": 30,
            "student_temp": 0.1,
            "center_momentum": 0.9,
        },
    ),
    "teacher_temp": 0.04,
    "param_groups": _GROUPS,
    "trained": ("student_backbone", "student_projection_head"),
    "warmup_epochs": 10,
    "end_value": 0.001,
    "ema": ("cosine", 0.996, 1.0),
    "ema_pairs": (
        ("student_backbone", "backbone"),
        ("student_projection_head", "projection_head"),
    ),
    "online_knn": False,
}
"""What lightly's two DINO scripts (ResNet-50 and ViT) share, value for value."""


LIGHTLY_RESNET50: Dict[str, Dict[str, Any]] = {
    "simclr": {
        "transform": ("SimCLRTransform", {}),
        "heads": {
            "projection_head": (
                "SimCLRProjectionHead",
                ((2048, 2048), (2048, 128)),
                {},
            ),
        },
        "teachers": {},
        "loss": (
            "NTXentLoss",
            {"temperature": 0.1, "gather_distributed": True, "memory_bank_size": (0,)},
        ),
        "optimizer": ("LARS", {"momentum": 0.9, "weight_decay": 1e-6}),
        "lr": ("sqrt", 0.075),
        "param_groups": _GROUPS,
        "trained": ("backbone", "projection_head"),
        "warmup_epochs": 10,
        "end_value": 0.001,
        "ema": None,
        "online_knn": True,
    },
    "mocov2": {
        "transform": ("MoCoV2Transform", {}),
        "heads": {
            "projection_head": ("MoCoProjectionHead", ((2048, 2048), (2048, 128)), {}),
            "key_projection_head": (
                "MoCoProjectionHead",
                ((2048, 2048), (2048, 128)),
                {},
            ),
        },
        "teachers": {"key_backbone": "copy:backbone", "key_projection_head": "fresh"},
        "loss": (
            "NTXentLoss",
            {
                "temperature": 0.2,
                "gather_distributed": True,
                "memory_bank_size": (65536, 128),
            },
        ),
        "optimizer": ("SGD", {"momentum": 0.9, "weight_decay": 1e-4}),
        "lr": ("linear", 0.03),
        "param_groups": _GROUPS,
        "trained": ("backbone", "projection_head"),
        "warmup_epochs": 0,
        "end_value": 0.001,
        "ema": ("constant", 0.999),
        "ema_pairs": (
            ("backbone", "key_backbone"),
            ("projection_head", "key_projection_head"),
        ),
        # Queries from views[1], keys from views[0]; the EMA update runs between
        # the query and the key encoding.
        "query_view": 1,
        "key_view": 0,
        "online_knn": False,
    },
    "byol": {
        "transform": ("BYOLTransform", {}),
        "heads": {
            "projection_head": ("BYOLProjectionHead", ((2048, 4096), (4096, 256)), {}),
            "prediction_head": ("BYOLPredictionHead", ((256, 4096), (4096, 256)), {}),
            "teacher_projection_head": (
                "BYOLProjectionHead",
                ((2048, 4096), (4096, 256)),
                {},
            ),
        },
        "teachers": {
            "teacher_backbone": "copy:backbone",
            "teacher_projection_head": "fresh",
        },
        "loss": ("NegativeCosineSimilarity", {}),
        "optimizer": ("LARS", {"momentum": 0.9, "weight_decay": 1e-6}),
        "lr": ("linear", 0.45),
        "param_groups": _GROUPS,
        "trained": ("backbone", "projection_head", "prediction_head"),
        "warmup_epochs": 10,
        "end_value": 0.001,
        "ema": ("cosine", 0.99, 1.0),
        "ema_pairs": (
            ("backbone", "teacher_backbone"),
            ("projection_head", "teacher_projection_head"),
        ),
        "online_knn": False,
    },
    "dino": {
        **_DINO,
        "transform": (
            "DINOTransform",
            {"global_crop_scale": (0.14, 1), "local_crop_scale": (0.05, 0.14)},
        ),
        "heads": _dino_heads(2048, norm_last_layer=True),
        "teachers": {
            "student_backbone": "copy:backbone",
            "student_projection_head": "fresh",
        },
        "optimizer": ("SGD", {"momentum": 0.9, "weight_decay": 1e-4}),
        "lr": ("linear", 0.03),
        "frozen_on_train_start": ("backbone", "projection_head"),
        "gradient_clip": ("norm", 3.0),
    },
    "swav": {
        "transform": ("SwaVTransform", {"crop_counts": (2, 6)}),
        "heads": {
            "projection_head": ("SwaVProjectionHead", ((2048, 2048), (2048, 128)), {}),
            "prototypes": (
                "SwaVPrototypes",
                ((128, 3000),),
                {"n_steps_frozen_prototypes": 1},
            ),
        },
        "teachers": {},
        "loss": (
            "SwaVLoss",
            {
                "temperature": 0.1,
                "sinkhorn_iterations": 3,
                "sinkhorn_epsilon": 0.05,
                "sinkhorn_gather_distributed": True,
            },
        ),
        "optimizer": ("LARS", {"momentum": 0.9, "weight_decay": 1e-6}),
        "lr": ("linear", 0.6),
        "param_groups": _GROUPS,
        "trained": ("backbone", "projection_head", "prototypes"),
        "warmup_epochs": 10,
        "end_value": ("linear", 0.0006),
        "ema": None,
        # Two queues (one per high-resolution crop) of 15 batches of 128-d
        # projections, used from epoch 15 once batch_idx > 15.
        "queue": {"count": 2, "batches": 15, "dim": 128, "start_epoch": 15},
        "online_knn": False,
    },
}
"""Per ResNet-50 method: augmentation (class and lightly's arguments), heads, how the
teachers start, loss (class and values), optimizer (class, momentum, weight decay),
learning-rate rule, parameter groups, trained modules, warmup epochs and end factor
of the per-step ``CosineWarmupScheduler``, EMA schedule and direction (student,
teacher), and the extras (DINO's constant teacher temperature, gradient clipping and
teacher switched off at train start; SwAV's queue; SimCLR's online kNN). Shared by
all: torchvision ``resnet50()`` with ``fc = Identity()`` (2048 features) and
``OnlineLinearClassifier(num_classes=...)`` (feature_dim 2048), built after the heads
and the loss."""

LIGHTLY_VITB16: Dict[str, Dict[str, Any]] = {
    "dino": {
        **_DINO,
        "transform": (
            "DINOTransform",
            {
                "global_crop_scale": (0.4, 1),
                "local_crop_scale": (0.05, 0.4),
                "n_local_views": 8,
            },
        ),
        "backbone": ("vit_small_patch16_224", {"dynamic_img_size": True}),
        "student_backbone": (
            "vit_small_patch16_224",
            {"dynamic_img_size": True, "drop_path_rate": 0.1},
        ),
        "embed_dim": 384,
        "heads": _dino_heads(384, norm_last_layer=False),
        "teachers": {
            "student_backbone": "fresh",
            "student_projection_head": "fresh",
        },
        "optimizer": ("AdamW", {"betas": (0.9, 0.999)}),
        "group_weight_decay": {
            "dino": 0.04,
            "dino_no_weight_decay": 0.0,
            "online_classifier": 0.0,
        },
        "weight_decay_schedule": ("cosine", 0.04, 0.4),
        "lr": ("linear", 0.0005),
        "gradient_clip": None,
    },
}
"""lightly's ViT DINO, in the notation of :data:`LIGHTLY_RESNET50`; the backbones are
timm models in ``MaskedVisionTransformerTIMM``, the student's last layer is frozen in
the first epoch in ``on_before_optimizer_step``, which also sets the ``dino`` group's
weight decay of the step."""

LIGHTLY_RESNET50_CLI: Dict[str, Any] = {
    "train_dir": "/datasets/imagenet/train",
    "val_dir": "/datasets/imagenet/val",
    "log_dir": "benchmark_logs",
    "batch_size_per_device": 128,
    "epochs": 100,
    "num_workers": 8,
    "accelerator": "gpu",
    "devices": 1,
    "precision": "16-mixed",
    "ckpt_path": None,
    "compile_model": False,
    "methods": None,
    "num_classes": 1000,
    "skip_knn_eval": False,
    "knn_k": 200,
    "knn_t": 0.1,
    "skip_linear_eval": False,
    "skip_finetune_eval": False,
    "float32_matmul_precision": "high",
    "strategy": "ddp_find_unused_parameters_true",
    "seed": None,
}
"""The flags of lightly's ResNet-50 ``main.py`` and their defaults (argument names)."""

LIGHTLY_VITB16_CLI: Dict[str, Any] = {
    **LIGHTLY_RESNET50_CLI,
    "knn_t": 0.07,
    "eval_method": "mae",
}
"""The flags of lightly's vitb16 ``main.py`` and their defaults."""

LIGHTLY_EVALUATION: Dict[str, Dict[str, Any]] = {
    "resnet50": {
        "knn": {"classifier": "KNNClassifier", "knn_k": 200, "knn_t": 0.1},
        "linear": {"classifier": "LinearClassifier", "epochs": 90, "lr": 0.1},
        "finetune": {"classifier": "FinetuneClassifier", "epochs": 30, "lr": 0.05},
        "eval_transform": {"resize": 256, "crop": 224},
        "train_transform": {"crop": 224},
        "pretrain_sanity_steps": None,
        "pretrain_collate": None,
    },
    "vitb16": {
        "knn": {"classifier": "KNNClassifier", "knn_k": 200, "knn_t": 0.07},
        "linear": {
            "mae": {
                "classifier": "LinearClassifierMAE",
                "optimizer": "LARS",
                "lr": 0.1,
                "warmup_epochs": 10,
            },
            "simclr": {"classifier": "LinearClassifier", "lr": 0.1},
            "epochs": 90,
        },
        "finetune": {
            "mae": {
                "classifier": "FinetuneClassifierMAE",
                "optimizer": "AdamW",
                "lr": 5e-4,
                "weight_decay": 0.05,
                "layerwise_lr_decay": 0.65,
                "warmup_epochs": 5,
                "mixup": {
                    "mixup_alpha": 0.8,
                    "cutmix_alpha": 1.0,
                    "label_smoothing": 0.1,
                },
            },
            "simclr": {"classifier": "FinetuneClassifier", "lr": 0.05},
            "epochs": 100,
        },
        "eval_transform": {"resize": 256, "crop": 224},
        "train_transform": {"crop": 224},
        "pretrain_sanity_steps": 0,
        "pretrain_collate": "MultiViewCollate",
    },
}
"""lightly's ``knn_eval.py``, ``linear_eval.py``, ``finetune_eval.py`` and the
pretraining loader settings of its two ``main.py``. Pretraining callbacks of both:
LearningRateMonitor, EarlyStopping(monitor="train_loss", patience=1e12,
check_finite=True), DeviceStatsMonitor, MetricCallback; batch norm synchronized
unless on CPU."""
