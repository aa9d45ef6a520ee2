"""The benchmarks' one kNN: lightly's weighted kNN with lightly's settings."""

from __future__ import annotations

import inspect

import pytest
import torch
from lightly.utils.benchmarking import BenchmarkModule

from benchmarks.common.knn import KNN_K, KNN_T, knn_top1
from benchmarks.studies.mechanism import evaluation


def _by_hand(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    t: float,
) -> torch.Tensor:
    """Weighted kNN (Wu et al. 2018, as lightly's knn_predict) in float64, one query
    at a time: cosine similarity, the k most similar, exp(sim / t) votes."""
    bank = torch.nn.functional.normalize(bank.double(), dim=1)
    predictions = []
    for q in torch.nn.functional.normalize(queries.double(), dim=1):
        sim = bank @ q
        top, index = sim.topk(k)
        votes = torch.zeros(int(bank_labels.max()) + 1, dtype=torch.float64)
        votes.index_add_(0, bank_labels[index], (top / t).exp())
        predictions.append(int(votes.argmax()))
    return torch.tensor(predictions)


def _data(seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(4, 8, generator=g)
    bank_labels = torch.randint(0, 4, (120,), generator=g)
    labels = torch.randint(0, 4, (50,), generator=g)
    bank = centers[bank_labels] + 0.8 * torch.randn(120, 8, generator=g)
    queries = centers[labels] + 0.8 * torch.randn(50, 8, generator=g)
    return bank, bank_labels, queries, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_weighted_knn_by_hand(seed: int) -> None:
    bank, bank_labels, queries, labels = _data(seed)
    expected = (_by_hand(bank, bank_labels, queries, 20, 0.1) == labels).double()
    accuracy = knn_top1(bank, bank_labels, queries, labels, k=20, t=0.1)
    assert accuracy == pytest.approx(float(expected.mean()), abs=1e-12)
    assert 0.3 < accuracy < 1.0  # separable enough to mean something, not trivial


def test_chunks_scale_and_k_above_the_bank_do_not_change_it() -> None:
    bank, bank_labels, queries, labels = _data(3)
    base = knn_top1(bank, bank_labels, queries, labels, k=20)
    assert knn_top1(bank, bank_labels, queries, labels, k=20, chunk=7) == base
    assert knn_top1(bank, bank_labels, queries, labels, k=20, chunk=None) == base
    assert knn_top1(3 * bank, bank_labels, queries / 2, labels, k=20) == base
    everything = knn_top1(bank, bank_labels, queries, labels, k=120)
    assert knn_top1(bank, bank_labels, queries, labels, k=10_000) == everything


def test_defaults_are_lightlys_settings_value_for_value() -> None:
    """k = 200 and t = 0.1, the defaults of lightly's benchmark module."""
    parameters = inspect.signature(BenchmarkModule.__init__).parameters
    assert parameters["knn_k"].default == KNN_K == 200
    assert parameters["knn_t"].default == KNN_T == 0.1
    defaults = inspect.signature(knn_top1).parameters
    assert (defaults["k"].default, defaults["t"].default) == (200, 0.1)


def test_the_mechanism_study_uses_it() -> None:
    assert evaluation.knn_top1 is knn_top1


def test_bad_arguments_are_refused() -> None:
    bank, bank_labels, queries, labels = _data(0)
    with pytest.raises(ValueError, match="at least one query"):
        knn_top1(bank, bank_labels, queries[:0], labels[:0])
    with pytest.raises(ValueError, match="k must be >= 1 and t > 0"):
        knn_top1(bank, bank_labels, queries, labels, k=0)
    with pytest.raises(ValueError, match="k must be >= 1 and t > 0"):
        knn_top1(bank, bank_labels, queries, labels, t=0.0)
