"""kNN top-1 on frozen features: lightly's weighted kNN, the one the studies use.

The sweeps score their backbones with lightly's own classes, as lightly's benchmarks
do (the CIFAR-10 benchmark's ``BenchmarkModule``, the ImageNet benchmark's
``KNNClassifier``); everything that scores features outside them (the studies, the
untrained network's floor) calls :func:`knn_top1`, which is lightly's ``knn_predict``
on L2-normalized features with lightly's settings by default (k = 200, t = 0.1).
"""

from __future__ import annotations

from typing import Optional

import torch
from lightly.utils.benchmarking import knn_predict
from torch import Tensor
from torch.nn import functional as F

KNN_K = 200
"""lightly's number of neighbors (its benchmarks' ``knn_k``)."""
KNN_T = 0.1
"""lightly's kNN temperature (its benchmarks' ``knn_t``)."""
CHUNK = 1000
"""Queries per ``knn_predict`` call (memory; the result does not depend on it)."""


@torch.no_grad()
def knn_top1(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    labels: Tensor,
    k: int = KNN_K,
    t: float = KNN_T,
    num_classes: Optional[int] = None,
    chunk: Optional[int] = CHUNK,
) -> float:
    """Top-1 accuracy of lightly's ``knn_predict`` on L2-normalized features.

    Args:
        bank: Features of the labeled bank, shape (N, D).
        bank_labels: Their labels, shape (N,).
        queries: Features to classify, shape (M, D).
        labels: Their true labels, shape (M,).
        k: Neighbors; at most N are used.
        t: Temperature of the similarity weights.
        num_classes: Classes (None: the largest label seen, plus one).
        chunk: Queries per call (None: all at once).

    Returns:
        The fraction of queries whose top-1 prediction is their label.

    Raises:
        ValueError: If there is no query, or ``k`` or ``t`` is not positive.
    """
    if len(queries) == 0 or len(bank) == 0:
        raise ValueError("knn_top1 needs at least one query and one bank feature")
    if k < 1 or not t > 0:
        raise ValueError(f"k must be >= 1 and t > 0, got k={k}, t={t}")
    bank_t = F.normalize(bank, dim=1).t().contiguous()
    queries = F.normalize(queries, dim=1)
    if num_classes is None:
        num_classes = int(max(bank_labels.max(), labels.max())) + 1
    k = min(k, bank.shape[0])
    step = len(queries) if chunk is None else chunk
    correct = 0
    for i in range(0, len(queries), step):
        prediction = knn_predict(
            queries[i : i + step], bank_t, bank_labels, num_classes, k, t
        )
        correct += int((prediction[:, 0] == labels[i : i + step]).sum())
    return correct / len(queries)


__all__ = ["CHUNK", "KNN_K", "KNN_T", "knn_top1"]
