"""kNN top-1, the linear probe, and the untrained network's scores.

The kNN is the benchmarks' one (:func:`benchmarks.common.knn.knn_top1`, re-exported
here under its old name).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from benchmarks.common.knn import CHUNK, knn_top1

# CHUNK: images per forward pass (and queries per kNN call).


@torch.no_grad()
def features(backbone: nn.Module, x: Tensor) -> Tensor:
    """Backbone features (N, D) of ``x`` in eval mode, in chunks; the mode is kept."""
    was_training = backbone.training
    backbone.eval()
    try:
        return torch.cat(
            [
                backbone(x[i : i + CHUNK]).flatten(start_dim=1)
                for i in range(0, len(x), CHUNK)
            ]
        )
    finally:
        backbone.train(was_training)


def linear_probe(
    train: Tensor,
    train_labels: Tensor,
    test: Tensor,
    test_labels: Tensor,
    iterations: int = 100,
    l2: float = 1e-4,
) -> float:
    """Top-1 of a multinomial logistic regression on frozen features.

    Standardized with the training features' mean and standard deviation;
    full-batch L-BFGS (strong Wolfe line search, history 20), zero initialization,
    loss cross-entropy + ``l2`` ||W||^2. Deterministic.
    """
    mean, std = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mean) / std, (test - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    weight = torch.zeros(train.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=iterations,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(train @ weight + bias, train_labels)
        loss = loss + l2 * weight.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        optimizer.step(closure)  # type: ignore[no-untyped-call]
    with torch.no_grad():
        correct = int(((test @ weight + bias).argmax(1) == test_labels).sum())
    return correct / len(test_labels)


def evaluate(
    backbone: nn.Module,
    bank: Tensor,
    bank_labels: Tensor,
    test: Tensor,
    test_labels: Tensor,
    k: int,
    t: float,
    probe: bool,
    probe_iterations: int = 100,
    probe_l2: float = 1e-4,
) -> Tuple[float, float]:
    """(kNN top-1, probe top-1 or NaN) of a backbone.

    Raises:
        FloatingPointError: The features contain NaN or Inf (a diverged run).
    """
    bank_f = features(backbone, bank)
    test_f = features(backbone, test)
    if not (bool(torch.isfinite(bank_f).all()) and bool(torch.isfinite(test_f).all())):
        raise FloatingPointError("the backbone's features contain NaN or Inf")
    knn = knn_top1(bank_f, bank_labels, test_f, test_labels, k, t)
    accuracy = (
        linear_probe(
            bank_f, bank_labels, test_f, test_labels, probe_iterations, probe_l2
        )
        if probe
        else float("nan")
    )
    return knn, accuracy


def label_of(final: float, untrained_knn: float, collapse: float, learn: float) -> str:
    """collapsed (below untrained - c), learned (at least untrained + 0.02), no gain."""
    if final < untrained_knn - collapse:
        return "collapsed"
    if final >= untrained_knn + learn:
        return "learned"
    return "no gain"


def chance(labels: torch.Tensor) -> float:
    """Top-1 of always answering the most frequent label: a diverged run's score."""
    return float(torch.bincount(labels).max()) / len(labels)


def first_below(
    steps: List[int], knn: List[float], untrained_knn: float, c: float
) -> Optional[int]:
    for step, value in zip(steps, knn, strict=True):
        if value < untrained_knn - c:
            return step
    return None


__all__ = [
    "CHUNK",
    "chance",
    "evaluate",
    "features",
    "first_below",
    "knn_top1",
    "label_of",
    "linear_probe",
]
