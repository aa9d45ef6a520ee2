"""Sensitivity of the ER objectives to kappa, the entropy weight and the estimator.

Short runs of SimCLR-ER and BYOL-ER on the stability study's protocol v2 (Fashion-MNIST,
1,024 images at 16 px, the small CNN, batch 128, lightly's CIFAR-10 settings) with one
setting changed at a time from the defaults (kappa by the rule, weight 1, plug-in):

- kappa in {1, 2, 5, 10, 20, 50};
- entropy weight in {0, 0.5, 1, 2};
- estimator plug-in or Joe's.

Records the final kNN top-1 and the final ER entropy gap of each run, writes
``kappa_sensitivity.md`` and ``kappa_sensitivity.png`` to --log-dir, and resumes
like the sweep (finished runs are kept).

    python benchmarks/studies/kappa_sensitivity.py --log-dir runs/kappa --epochs 5

The plot in docs/kappa.md came from this command at commit 6777585, under protocol v1
(2,048 training images).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from torch import nn

from benchmarks.cifar.config import RunSpec, SweepConfig
from benchmarks.cifar.data import load_dataset
from benchmarks.cifar.run import run_one
from benchmarks.common.figures import pyplot, save_figure_atomic
from benchmarks.common.records import RunResult
from benchmarks.common.tables import markdown_table
from lightly_er.loss import ERNegativeCosineSimilarity, ERNTXentLoss
from lightly_er.monitoring import entropy_settings
from lightly_er.utils import write_atomic

PROTOCOL: Dict[str, Any] = dict(
    dataset="fashion-mnist",
    backbone="small",
    image_size=16,
    train_subset=1024,
    test_subset=1000,
    epochs=30,
    num_workers=1,
    knn_k=200,
    knn_t=0.1,
    accelerator="cpu",
    precision="32-true",
)
"""The stability study's protocol v2 (archived, ``benchmarks/studies/ARCHIVE.md``):
Fashion-MNIST at 16 px, the small CNN, 1,024 training images; lightly's CIFAR-10
settings otherwise."""
KAPPAS: Tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
WEIGHTS: Tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
ESTIMATORS: Tuple[str, ...] = ("plugin", "joe")
METHODS: Dict[str, Callable[[], nn.Module]] = {
    "simclr_er": lambda: ERNTXentLoss(temperature=0.5),  # lightly's CIFAR-10 SimCLR
    "byol_er": ERNegativeCosineSimilarity,
}
"""ER method -> its loss as the benchmark builds it (without --kappa)."""


def default_kappa(method: str) -> float:
    """The kappa the method's loss uses by default: asked of the loss itself."""
    settings = entropy_settings(METHODS[method]())
    assert settings is not None and settings["support"] == "sphere"
    return float(settings["kappa"])


Setting = Tuple[str, str, Any]


def settings() -> List[Setting]:
    """(method, knob, value) of every run; the default setting appears once."""
    out: List[Setting] = []
    for method in METHODS:
        rule = default_kappa(method)
        out += [(method, "kappa", k) for k in KAPPAS]
        out += [(method, "entropy_weight", w) for w in WEIGHTS if w != 1.0]
        out += [(method, "estimator", "joe")]
        if rule not in KAPPAS:
            out.append((method, "kappa", rule))
    return out


def run_setting(
    setting: Setting, base: SweepConfig, data: Any, log_dir: Path
) -> RunResult:
    """One run (or its finished record) of a setting."""
    method, knob, value = setting
    name = f"{method}-{knob}{value}".replace(".", "p")
    path = log_dir / "runs" / f"{name}.json"
    if path.is_file():
        return RunResult.load(path)
    kwargs: Dict[str, Any] = {
        "kappa": None,
        "entropy_weight": 1.0,
        "estimator": "plugin",
    }
    kwargs[knob] = value
    config = replace(base, log_dir=log_dir / name, methods=[method], **kwargs)
    ema = 0.99 if method == "byol_er" else None
    result = run_one(RunSpec(method, 128, ema, 0, epochs=config.epochs), config, data)
    result.save(path)
    print(f"{name}: kNN final {result.knn_top1_final:.3f}", flush=True)
    return result


def table(rows: Sequence[Tuple[Setting, RunResult]]) -> str:
    columns = ("Method", "Setting", "κ", "kNN top-1 final")
    return markdown_table(
        (*columns, "ER entropy gap final (nats)"),
        (
            (
                method,
                f"{knob} = {value}",
                f"{r.kappa:g}",
                f"{r.knn_top1_final:.3f}",
                f"{r.er_entropy_per_epoch[-1]:.3f}",
            )
            for (method, knob, value), r in rows
        ),
        "llrrr",
    )


def plot(rows: Sequence[Tuple[Setting, RunResult]], path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for method in METHODS:
        mine = [(s, r) for s, r in rows if s[0] == method]
        kappas = sorted((s[2], r) for s, r in mine if s[1] == "kappa")
        axes[0].plot(
            [k for k, _ in kappas],
            [r.knn_top1_final for _, r in kappas],
            "o-",
            label=method,
        )
        axes[1].plot(
            [k for k, _ in kappas],
            [r.er_entropy_per_epoch[-1] for _, r in kappas],
            "o-",
            label=method,
        )
        weights = sorted(
            [(s[2], r) for s, r in mine if s[1] == "entropy_weight"]
            + [
                (1.0, r)
                for s, r in mine
                if s[1] == "kappa" and r.kappa == default_kappa(method)
            ]
        )
        axes[2].plot(
            [w for w, _ in weights],
            [r.knn_top1_final for _, r in weights],
            "o-",
            label=method,
        )
    for ax, (xlabel, ylabel) in zip(
        axes,
        (
            ("κ", "kNN top-1 (final)"),
            ("κ", "ER entropy gap (nats)"),
            ("entropy weight", "kNN top-1 (final)"),
        ),
        strict=True,
    ):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_xscale("log")
    axes[1].set_xscale("log")
    figure.tight_layout()
    save_figure_atomic(figure, path)
    plt.close(figure)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--log-dir", type=Path, default=Path("benchmark_logs/kappa"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-workers", type=int, default=1)
    args = parser.parse_args(argv)
    protocol = {**PROTOCOL, "epochs": args.epochs, "num_workers": args.num_workers}
    base = SweepConfig(**protocol, seeds=[0], progress_bar=False)
    data = load_dataset(base.dataset)
    rows = [(s, run_setting(s, base, data, args.log_dir)) for s in settings()]
    text = table(rows)
    write_atomic(args.log_dir / "kappa_sensitivity.md", text)
    plot(rows, args.log_dir / "kappa_sensitivity.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
