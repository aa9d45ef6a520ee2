"""Every deliberate difference of the CIFAR-10 benchmark from lightly's scripts.

Each is an option that is off by default (or a fact of the machine it runs on);
``benchmarks/README.md`` shows :data:`DIFFERENCES` as a table
(:func:`benchmarks.common.differences.differences_markdown`), and a test keeps the
two equal.
"""

from __future__ import annotations

from typing import Tuple

from benchmarks.common.differences import Difference

DIFFERENCES: Tuple[Difference, ...] = (
    Difference(
        "Dataset (`--dataset`)",
        "CIFAR-10 from image folders",
        "CIFAR-10 through torchvision (default); Fashion-MNIST or digits as options",
        "Same images for CIFAR-10. The CPU machine reaches no CIFAR-10, so our "
        "runs use Fashion-MNIST (gray images repeated to 3 channels), which is "
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
        "kNN neighbors (`--knn-k`, `--knn-t`)",
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
