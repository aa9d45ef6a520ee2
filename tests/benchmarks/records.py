"""Run records with given settings and simple per-epoch curves, for the tests."""

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


def sweep_record(
    method: str, batch_size: int, seed: int, top1: float, **kw: object
) -> RunResult:
    """A digits record of BYOL with simple curves; ``ema`` (default 0.99) in kw."""
    objective = "er" if method.endswith("_er") else "original"
    return RunResult(
        method=method,
        model="BYOL",
        objective=objective,
        dataset="digits",
        batch_size=batch_size,
        ema=kw.get("ema", 0.99),  # type: ignore[arg-type]
        epochs=2,
        seed=seed,
        knn_top1=top1,
        knn_top1_final=top1 - 0.05,
        knn_top1_per_epoch=[top1 - 0.1, top1],
        kappa=10.0,
        estimator="plugin",
        entropy_weight=1.0 if objective == "er" else None,
        er_entropy_per_epoch=[2.0, 3.0 + seed],
        output_collapse_score_per_epoch=[0.6, 0.7],
        collapse_score_per_epoch=[0.5, 0.25 + seed / 10],
        rankme_per_epoch=[20.0, 30.0],
        runtime_s=120.0,
    )
