"""A run record with given settings and simple per-epoch curves, for the tests."""

from __future__ import annotations

from typing import Optional, Sequence

from lightly_er.benchmarking.results import RunResult


def make_record(
    method: str,
    batch: int,
    ema: Optional[float],
    seed: int,
    final: float,
    entropy: Sequence[float] = (1.0, 1.0, 1.0),
    epochs: int = 3,
) -> RunResult:
    """A Fashion-MNIST record whose kNN curve ends at ``final`` after ``epochs``."""
    return RunResult(
        method=method,
        model=method.removesuffix("_er").upper(),
        objective="er" if method.endswith("_er") else "original",
        dataset="fashion-mnist",
        batch_size=batch,
        ema=ema,
        epochs=epochs,
        seed=seed,
        knn_top1=final + 0.01,
        knn_top1_final=final,
        knn_top1_per_epoch=[final - 0.1, final + 0.01, final][-epochs:],
        er_entropy_per_epoch=list(entropy),
        collapse_score_per_epoch=[0.8, 0.8, 0.8][-epochs:],
    )
