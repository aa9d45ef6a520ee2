"""What the CIFAR-10 sweep tests share: the script, a tiny sweep, its main()."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.cifar.config import SweepConfig
from tests.benchmarks.scripts import load_script

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "cifar10.py"


def cli() -> ModuleType:
    """benchmarks/cifar10.py, loaded as a module."""
    return load_script("cifar10")


def tiny(log_dir: Path, **overrides: Any) -> SweepConfig:
    """simclr and byol_er on 64 digits, one epoch, batch 16, on the CPU."""
    settings: dict[str, Any] = dict(
        methods=["simclr", "byol_er"],
        batch_sizes=[16],
        epochs=1,
        seeds=[0],
        dataset="digits",
        log_dir=log_dir,
        backbone="small",
        accelerator="cpu",
        num_workers=0,
        train_subset=64,
        knn_k=5,
        progress_bar=False,
    )
    settings.update(overrides)
    return SweepConfig(**settings)


HANG_GUARD_S = 3600
"""A subprocess's time limit: a guard against a hang, not a speed check (a loaded
2-core machine may take many times the usual seconds)."""


def run_main(script: ModuleType, config: SweepConfig, monkeypatch: Any) -> int:
    """The script's main() on ``config`` (its exit code)."""
    monkeypatch.setattr(script, "parse_config", lambda argv=None: config)
    code: int = script.main([])
    return code
