"""Every deliberate difference of the ImageNet benchmark from lightly's scripts.

Each is an option that is off by default (or a fact of the machine it runs on);
``benchmarks/imagenet/README.md`` shows :data:`DIFFERENCES` as a table
(:func:`benchmarks.common.differences.differences_markdown`), and a test keeps the
two equal.
"""

from __future__ import annotations

from typing import Tuple

from benchmarks.common.differences import Difference

DIFFERENCES: Tuple[Difference, ...] = (
    Difference(
        "Methods (`--methods`)",
        "ResNet-50: BarlowTwins, BYOL, DCL, DCLW, DINO, MoCo v2, SimCLR, SwAV, TiCo, "
        "VICReg; ViT: AIM, CAPI, DINO, DINOv2, iBOT, LeJEPA, MAE, Pixio, VISReg",
        "ResNet-50: `simclr`, `mocov2`, `byol`, `dino`, `swav`; ViT: `dino`; each "
        "with its `_er` twin",
        "The methods that have an ER objective",
    ),
    Difference(
        "ER runs only (`<method>_er`)",
        "-",
        "lightly-er's loss and heads (ER classes with the original's arguments); "
        "the ER losses gather the batch over processes, like lightly's; kappa by "
        "the rule (1 / temperature for NT-Xent, 10 otherwise), weight 1, plug-in "
        "estimator; `train_entropy` and `train_reconstruction` are logged",
        "The paper's objective with the authors' defaults; the rest of the module "
        "is the original's",
    ),
    Difference(
        "Backbone (`--backbone`)",
        "ResNet-50; ViT-S/16",
        "the same (default); ResNet-18/34/101, ViT-Ti/16 or a one-block test ViT "
        "as options",
        "CPU tests",
    ),
    Difference(
        "Image size (`--image-size`)",
        "224 (local crops 96, evaluation resize 256)",
        "224 (default); another size scales the local crops and the resize by "
        "size / 224",
        "CPU tests on 32- and 56-pixel images",
    ),
    Difference(
        "Batches per epoch (`--limit-train-batches`, `--limit-val-batches`)",
        "all",
        "all (default); a limit as an option, which also logs every step when "
        "fewer than 50 training batches",
        "CPU tests",
    ),
    Difference(
        "Evaluation epochs (`--linear-epochs`, `--finetune-epochs`)",
        "90 and 30 (ViT: 90 and 100)",
        "the same (default); others as options",
        "CPU tests",
    ),
    Difference(
        "Teacher EMA (`--ema`)",
        "MoCo 0.999; BYOL 0.99 -> 1, DINO 0.996 -> 1 (cosine)",
        "the same (default); a constant as an option (SimCLR and SwAV have no teacher)",
        "The stability study varies it",
    ),
    Difference(
        "Seeding (`--seed`)",
        "once, before the first method",
        "before every method",
        "A method and its ER twin start from the same weights",
    ),
    Difference(
        "Warmup longer than the run (`--epochs` < 10; MAE evaluation epochs < 10 or 5)",
        "`CosineWarmupScheduler` raises ValueError",
        "the warmup spans the whole run",
        "Only runs that lightly cannot do change",
    ),
    Difference(
        "`persistent_workers` with `--num-workers 0`",
        "True (PyTorch raises ValueError)",
        "False",
        "Only runs that lightly cannot do change",
    ),
    Difference(
        "SimCLR's online kNN metrics",
        "logged by the `KNNClassifier` submodule, which Lightning 2.x refuses "
        "(MisconfigurationException at the first validation)",
        "the same classifier computes them and SimCLR logs them",
        "Same values; lightly's version does not run",
    ),
    Difference(
        "Evaluating a checkpoint (`--epochs 0 --ckpt-path`)",
        "ResNet-50: `torch.load(path)`; ViT: `torch.load(path, weights_only=False)`",
        '`torch.load(path, map_location="cpu", weights_only=False)`',
        "The same weights; a checkpoint saved on a GPU also loads on a CPU machine",
    ),
    Difference(
        "Input checks",
        "none: a bad value fails somewhere in the run",
        "one line `error: ...` and exit status 2 before anything is written "
        "(folders, class count, `--num-classes` >= 5 for the top-5 metrics, "
        "`--ckpt-path` with one method, Lightning's names, ViT crop sizes that "
        "fit the patch size)",
        "Only runs that lightly cannot do change",
    ),
    Difference(
        "Run folder",
        "`<log-dir>/<method>/<second>`, made by each process",
        "`<log-dir>/<method>/<microsecond>`, one name for all DDP processes, made "
        "with its first file; a run that fails before writing leaves none",
        "No empty or split run folders",
    ),
    Difference(
        "Loggers and results",
        "TensorBoard; a Markdown table printed",
        "TensorBoard and CSV (`metrics.csv`) per stage; the table printed and "
        "`results.json` written",
        "Machine-readable results; no effect on training",
    ),
    Difference(
        "Checkpoints",
        "Lightning's default in every stage (`<stage>/version_0/checkpoints/`)",
        "pretraining only: `checkpoints/last.ckpt` after every epoch (resume with "
        "`--ckpt-path`)",
        "No effect on training",
    ),
    Difference(
        "DeviceStatsMonitor (`--device-stats`)",
        "on in every stage",
        "off (default); on as an option",
        "It logs device statistics every step (and needs psutil on CPU); no effect "
        "on training",
    ),
    Difference(
        "Entropy monitor (`--no-entropy-monitor`, `--entropy-every-n-steps`)",
        "none",
        "on, every 50 steps: entropy and collapse score of the trained heads "
        '(`EntropyMonitor(metrics="all")` finds them and logs every series)',
        "Measurement only, without gradient; no effect on training",
    ),
    Difference(
        "Warnings",
        "ResNet-50 `main.py` prints a stack trace with every warning",
        "Python's default warnings",
        "No effect on training",
    ),
)
"""Every deliberate difference from lightly's ImageNet scripts."""
