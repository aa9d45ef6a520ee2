"""A run record with given settings and simple per-epoch curves, for the tests."""

from __future__ import annotations

from typing import Optional, Sequence

from benchmarks.common.records import RunResult


def make_record(
    method: str,
    batch: int,
    ema: Optional[float],
    seed: int,
    final: float,
    entropy: Optional[Sequence[float]] = None,
    epochs: int = 3,
) -> RunResult:
    """A Fashion-MNIST record of ``epochs`` epochs, one value per epoch in every curve.

    The kNN curve peaks at ``final + 0.01`` the epoch before the last and ends at
    ``final``; the entropy is 1.0 in every epoch unless given.
    """
    entropy = [1.0] * epochs if entropy is None else list(entropy)
    assert len(entropy) == epochs, "one entropy value per epoch"
    knn = ([final - 0.1] * epochs + [final + 0.01, final])[-epochs:]
    return RunResult(
        method=method,
        model=method.removesuffix("_er").upper(),
        objective="er" if method.endswith("_er") else "original",
        dataset="fashion-mnist",
        batch_size=batch,
        ema=ema,
        epochs=epochs,
        seed=seed,
        knn_top1=max(knn),
        knn_top1_final=final,
        knn_top1_per_epoch=knn,
        er_entropy_per_epoch=entropy,
        collapse_score_per_epoch=[0.8] * epochs,
    )
