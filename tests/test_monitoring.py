"""Tests of the label-free monitors (lightly_er.functional) and lightly_er.monitoring.

The references are hand-written loops over the documented formulas, closed forms
(matrices with known singular values, antipodal pairs) and lightly's own functions.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
import torch
from lightly.loss import NegativeCosineSimilarity, NTXentLoss
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.debug import std_of_l2_normalized
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import Tensor, nn
from torch import distributed as torch_dist
from torch import multiprocessing as mp
from torch.nn.functional import normalize
from torch.utils.data import DataLoader, TensorDataset

from lightly_er import monitoring
from lightly_er.functional import (
    alignment,
    discrete_entropy,
    effective_rank,
    log_vmf_normalizer,
    sphere_entropy,
    uniformity,
)
from lightly_er.monitoring import (
    CollapseAlarm,
    CollapseWarning,
    EntropyMeter,
    EntropyMonitor,
    gather_rows_no_grad,
)

F64 = torch.float64

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers.*",
    "ignore:.*number of training batches.*",
    "ignore:.*GPU available but not used.*",
)


def _orthonormal(n: int, k: int, seed: int, dtype: torch.dtype = F64) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=dtype))
    return q


def _sphere(n: int, d: int, seed: int, dtype: torch.dtype = F64) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def _rotation(d: int, seed: int) -> Tensor:
    return _orthonormal(d, d, seed)


# ---------------------------------------------------------------------------------------
# effective_rank
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("rank", [1, 2, 5, 12])
def test_effective_rank_of_equal_singular_values_is_the_rank(rank: int) -> None:
    n, d = 40, 12
    u = _orthonormal(n, rank, seed=rank)
    v = _orthonormal(d, rank, seed=100 + rank)
    z = 3.0 * u @ v.T  # rank r, all r singular values equal to 3
    assert effective_rank(z).item() == pytest.approx(rank, abs=1e-4)
    # Without the eps of RankMe the formula is exact.
    assert effective_rank(z, eps=0.0).item() == pytest.approx(rank, abs=1e-10)


def test_effective_rank_matches_the_formula_with_eps() -> None:
    z = torch.randn(30, 7, generator=torch.Generator().manual_seed(0), dtype=F64)
    s = torch.linalg.svdvals(z).tolist()
    p = [x / sum(s) + 1e-7 for x in s]
    expected = math.exp(-sum(q * math.log(q) for q in p))
    assert effective_rank(z).item() == pytest.approx(expected, rel=1e-12)


def test_effective_rank_of_known_unequal_spectrum() -> None:
    # Singular values 1, 1, 2: p = 1/4, 1/4, 1/2, entropy 1.5 log 2.
    z = torch.diag(torch.tensor([1.0, 1.0, 2.0], dtype=F64))
    expected = math.exp(1.5 * math.log(2.0))
    assert effective_rank(z, eps=0.0).item() == pytest.approx(expected, rel=1e-12)


def test_effective_rank_of_gaussian_is_near_full() -> None:
    g = torch.Generator().manual_seed(0)
    # Tall: the singular values concentrate around sqrt(N) (Marchenko-Pastur,
    # d / N = 1/64), so the effective rank is within 0.1 % of d.
    tall = effective_rank(torch.randn(4096, 64, generator=g)).item()
    assert 0.995 * 64 < tall <= 64
    # Square: the singular values / sqrt(N) follow the quarter-circle law on [0, 2],
    # and the effective rank / N tends to exp(-E[(s / mu) log(s / mu)]), mu = E[s],
    # which is 0.805 (integrated numerically below).
    square = effective_rank(torch.randn(256, 256, generator=g)).item()
    x = torch.linspace(0.0, 2.0, 200001, dtype=F64)[1:]
    density = torch.sqrt(4.0 - x**2) / math.pi
    mean_s = torch.trapezoid(x * density, x)
    limit = math.exp(
        -(torch.trapezoid((x / mean_s) * torch.log(x / mean_s) * density, x)).item()
    )
    assert 0.80 < limit < 0.81
    assert square / 256 == pytest.approx(limit, abs=0.003)


def test_effective_rank_bounds_and_collapse() -> None:
    assert effective_rank(torch.zeros(10, 4)).item() == pytest.approx(1.0, abs=1e-5)
    constant = torch.ones(50, 8) * torch.arange(1.0, 9.0)
    assert effective_rank(constant).item() == pytest.approx(1.0, abs=1e-4)
    assert effective_rank(torch.randn(1, 6)).item() == 1.0
    z = torch.randn(3, 50, dtype=F64)
    assert 1.0 <= effective_rank(z).item() <= 3.0


def test_effective_rank_invariances() -> None:
    z = torch.randn(64, 10, generator=torch.Generator().manual_seed(3), dtype=F64)
    reference = effective_rank(z).item()
    assert effective_rank(7.5 * z).item() == pytest.approx(reference, rel=1e-12)
    assert effective_rank(z @ _rotation(10, 4)).item() == pytest.approx(
        reference, rel=1e-10
    )
    assert effective_rank(z[torch.randperm(64)]).item() == pytest.approx(
        reference, rel=1e-10
    )
    assert effective_rank(z.T).item() == pytest.approx(reference, rel=1e-10)


def test_effective_rank_float32_and_bfloat16() -> None:
    z = torch.randn(64, 10, generator=torch.Generator().manual_seed(3), dtype=F64)
    reference = effective_rank(z).item()
    assert effective_rank(z.float()).item() == pytest.approx(reference, rel=1e-5)
    low = effective_rank(z.bfloat16())
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(reference, rel=2e-2)


def test_effective_rank_gradcheck() -> None:
    z = torch.randn(8, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(effective_rank, (z,))


# ---------------------------------------------------------------------------------------
# alignment and uniformity
# ---------------------------------------------------------------------------------------
def _alignment_loop(z1: Tensor, z2: Tensor, alpha: float) -> float:
    total = 0.0
    for a, b in zip(z1.tolist(), z2.tolist(), strict=True):
        distance = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))
        total += distance**alpha
    return total / z1.shape[0]


def _uniformity_loop(z: Tensor, t: float) -> float:
    rows = z.tolist()
    terms = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            sq = sum((x - y) ** 2 for x, y in zip(rows[i], rows[j], strict=True))
            terms.append(math.exp(-t * sq))
    return math.log(sum(terms) / len(terms))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0])
def test_alignment_matches_hand_formula(alpha: float) -> None:
    z1 = _sphere(20, 6, seed=1)
    z2 = normalize(z1 + 0.5 * _sphere(20, 6, seed=2), dim=1)
    expected = _alignment_loop(z1, z2, alpha)
    assert alignment(z1, z2, alpha=alpha).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("t", [0.5, 2.0, 5.0])
def test_uniformity_matches_hand_formula(t: float) -> None:
    z = _sphere(15, 5, seed=3)
    assert uniformity(z, t=t).item() == pytest.approx(_uniformity_loop(z, t), rel=1e-12)


def test_alignment_and_uniformity_extremes() -> None:
    z = _sphere(32, 8, seed=4)
    assert alignment(z, z).item() == 0.0
    assert alignment(z, -z).item() == pytest.approx(4.0, abs=1e-12)
    assert alignment(z, -z, alpha=1.0).item() == pytest.approx(2.0, abs=1e-12)
    collapsed = normalize(torch.ones(16, 8, dtype=F64), dim=1)
    assert uniformity(collapsed).item() == pytest.approx(0.0, abs=1e-12)
    pair = torch.tensor([[0.0, 1.0], [0.0, -1.0]], dtype=F64)
    assert uniformity(pair, t=3.0).item() == pytest.approx(-12.0, abs=1e-12)
    # A large uniform sample of a high-dimensional sphere approaches -2t.
    assert uniformity(_sphere(2000, 256, seed=5), t=2.0).item() == pytest.approx(
        -4.0, abs=0.05
    )


def test_alignment_and_uniformity_invariances() -> None:
    z1 = _sphere(24, 7, seed=6)
    z2 = _sphere(24, 7, seed=7)
    rotation = _rotation(7, 8)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    a = alignment(z1, z2).item()
    u = uniformity(z1).item()
    assert alignment(z1 @ rotation, z2 @ rotation).item() == pytest.approx(a, rel=1e-10)
    assert alignment(z1[perm], z2[perm]).item() == pytest.approx(a, rel=1e-10)
    assert alignment(z2, z1).item() == pytest.approx(a, rel=1e-12)
    assert uniformity(z1 @ rotation).item() == pytest.approx(u, rel=1e-10)
    assert uniformity(z1[perm]).item() == pytest.approx(u, rel=1e-10)


def test_alignment_and_uniformity_gradients() -> None:
    def align(x: Tensor, y: Tensor) -> Tensor:
        return alignment(normalize(x, dim=1), normalize(y, dim=1))

    def unif(x: Tensor) -> Tensor:
        return uniformity(normalize(x, dim=1), t=1.5)

    x = torch.randn(6, 4, dtype=F64, requires_grad=True)
    y = torch.randn(6, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(align, (x, y))
    assert torch.autograd.gradcheck(unif, (x,))
    # Finite (zero) gradients at identical views and a collapsed batch.
    z = normalize(torch.ones(5, 4, dtype=F64), dim=1).requires_grad_(True)
    (g_align,) = torch.autograd.grad(alignment(z, z.detach()), z)
    (g_unif,) = torch.autograd.grad(uniformity(z), z)
    assert torch.isfinite(g_align).all() and torch.isfinite(g_unif).all()


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: alignment(torch.ones(4, 3), torch.ones(4, 3)),
            ValueError,
            "unit-norm",
        ),
        (lambda: alignment(_sphere(4, 3, 0), _sphere(5, 3, 0)), ValueError, "shape"),
        (
            lambda: alignment(_sphere(4, 3, 0), _sphere(4, 3, 1), 0.0),
            ValueError,
            "alpha",
        ),
        (lambda: uniformity(_sphere(1, 3, 0)), ValueError, "at least 2"),
        (lambda: uniformity(_sphere(4, 3, 0), t=-1.0), ValueError, "t must"),
        (lambda: uniformity(_sphere(4, 3, 0), t="2"), TypeError, "t must"),
        (lambda: effective_rank(torch.ones(4)), ValueError, "shape"),
        (
            lambda: effective_rank(torch.ones(4, 3, dtype=torch.long)),
            TypeError,
            "float",
        ),
        (lambda: effective_rank(torch.full((4, 3), math.nan)), ValueError, "NaN"),
        (lambda: effective_rank(torch.ones(4, 3), eps=-1.0), ValueError, "eps"),
    ],
)
def test_monitor_functions_reject_bad_input(call: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------------------------------
# EntropyMeter
# ---------------------------------------------------------------------------------------
def test_meter_sphere_agrees_with_functional() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 12, generator=g)
    x2 = x + 0.3 * torch.randn(48, 12, generator=g)
    meter = EntropyMeter("sphere", kappa=5.0, estimator="plugin")
    metrics = meter.update(x, x2)
    assert metrics is not None
    z, z2 = normalize(x, dim=1), normalize(x2, dim=1)
    entropy = sphere_entropy(z, 5.0, estimator="plugin").item()
    minimum = -log_vmf_normalizer(12, 5.0).item() - 5.0
    expected = {
        "entropy": entropy,
        "normalized_entropy": (entropy - minimum) / math.log(48),
        "effective_rank": effective_rank(z).item(),
        "std": std_of_l2_normalized(x).item(),
        "uniformity": 0.5 * (uniformity(z).item() + uniformity(z2).item()),
        "alignment": alignment(z, z2).item(),
    }
    assert metrics.keys() == expected.keys()
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert meter.latest == metrics


def test_meter_discrete_agrees_with_functional() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(40, 16, generator=g)
    meter = EntropyMeter("discrete", temperature=0.5)
    metrics = meter.update(logits)
    assert metrics is not None
    p = torch.softmax(logits / 0.5, dim=1)
    entropy = discrete_entropy(p).item()
    assert metrics["entropy"] == pytest.approx(entropy, rel=1e-6)
    assert metrics["normalized_entropy"] == pytest.approx(
        entropy / math.log(16), rel=1e-6
    )
    assert metrics["effective_rank"] == pytest.approx(
        effective_rank(p).item(), rel=1e-6
    )
    assert metrics["std"] == pytest.approx(std_of_l2_normalized(p).item(), rel=1e-6)
    assert set(metrics) == {"entropy", "normalized_entropy", "effective_rank", "std"}
    # The same rows given as probabilities.
    as_probabilities = EntropyMeter("discrete", inputs="probabilities").update(p)
    assert as_probabilities == pytest.approx(metrics, rel=1e-6)


def test_meter_normalized_entropy_extremes() -> None:
    collapsed = EntropyMeter("sphere", kappa=10.0).update(torch.ones(32, 8) * 3.0)
    assert collapsed is not None
    assert collapsed["normalized_entropy"] == pytest.approx(0.0, abs=1e-5)
    assert collapsed["effective_rank"] == pytest.approx(1.0, abs=1e-4)
    assert collapsed["std"] == pytest.approx(0.0, abs=1e-6)
    assert collapsed["uniformity"] == pytest.approx(0.0, abs=1e-6)
    # Orthogonal points with a sharp kernel: the kernels do not overlap.
    separated = EntropyMeter("sphere", kappa=60.0).update(torch.eye(16))
    assert separated is not None
    assert separated["normalized_entropy"] == pytest.approx(1.0, abs=1e-5)
    assert separated["effective_rank"] == pytest.approx(16.0, abs=1e-3)
    # Discrete: every sample on one class, and a uniform use of the classes.
    one_class = torch.full((20, 10), -10.0)
    one_class[:, 3] = 10.0
    meter = EntropyMeter("discrete", temperature=0.1)
    assert meter.update(one_class)["normalized_entropy"] == pytest.approx(  # type: ignore[index]
        0.0, abs=1e-6
    )
    uniform_use = torch.eye(10).repeat(2, 1) * 20.0
    assert EntropyMeter("discrete").update(uniform_use)[  # type: ignore[index]
        "normalized_entropy"
    ] == pytest.approx(1.0, abs=1e-6)


def test_meter_every_n_is_honoured() -> None:
    meter = EntropyMeter(every_n=3)
    batches = [torch.randn(8, 4) for _ in range(7)]
    results = [meter.update(b) for b in batches]
    computed = [i for i, r in enumerate(results) if r is not None]
    assert computed == [0, 3, 6]
    assert (meter.num_calls, meter.num_updates) == (7, 3)
    expected = EntropyMeter().update(batches[6])
    assert meter.latest == expected
    assert not meter.is_due
    meter.reset()
    assert (meter.num_calls, meter.num_updates, meter.latest) == (0, 0, {})
    assert meter.is_due


def test_meter_running_average() -> None:
    g = torch.Generator().manual_seed(2)
    batches = [torch.randn(16, 6, generator=g) * (i + 1) ** 2 for i in range(4)]
    batches[2] = torch.ones(16, 6)  # a collapsed batch moves the averages a lot
    meter = EntropyMeter(momentum=0.75)
    values = [meter.update(b) for b in batches]
    for name in ("entropy", "effective_rank", "uniformity"):
        expected = values[0][name]  # type: ignore[index]
        for v in values[1:]:
            expected = 0.75 * expected + 0.25 * v[name]  # type: ignore[index]
        assert meter.running[name] == pytest.approx(expected, rel=1e-12)
    # A metric that appears later starts its average at its first value.
    pair = meter.update(batches[0], batches[1])
    assert meter.running["alignment"] == pair["alignment"]  # type: ignore[index]


def test_meter_skips_small_and_nonfinite_batches() -> None:
    meter = EntropyMeter()
    assert meter.update(torch.randn(1, 8)) is None
    assert meter.update(torch.randn(0, 8)) is None
    with pytest.warns(UserWarning, match="NaN or Inf"):
        assert meter.update(torch.full((4, 8), math.nan)) is None
    assert (meter.num_calls, meter.num_updates, meter.latest) == (3, 0, {})
    assert meter.update(torch.randn(2, 8)) is not None


def test_meter_casts_and_flattens() -> None:
    x = torch.randn(16, 2, 3, dtype=F64)
    reference = EntropyMeter().compute(x.reshape(16, 6).float())
    assert EntropyMeter().compute(x) == reference
    low = EntropyMeter().compute(x.half())
    assert low is not None and reference is not None
    assert low["entropy"] == pytest.approx(reference["entropy"], rel=1e-2)


def test_meter_has_no_effect_on_training() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    x = torch.randn(32, 8)

    def step(meter: Optional[EntropyMeter]) -> Tuple[Tensor, List[Tensor]]:
        model.zero_grad()
        out = model(x)
        if meter is not None:
            before = out.detach().clone()
            second = out * 2.0
            saved: List[Tensor] = []

            def pack(t: Tensor) -> Tensor:
                saved.append(t)
                return t

            # No autograd inside the meter: no operation saves a tensor for backward.
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                assert meter.update(out, second) is not None
            assert saved == []
            assert torch.equal(out, before)
            assert out.requires_grad and out.grad_fn is not None
        out.pow(2).sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]

    out_plain, grads_plain = step(None)
    out_metered, grads_metered = step(EntropyMeter())
    assert torch.equal(out_plain, out_metered)
    for a, b in zip(grads_plain, grads_metered, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"support": "ball"}, ValueError, "support"),
        ({"kappa": 0.0}, ValueError, "kappa"),
        ({"estimator": "knn"}, ValueError, "estimator"),
        ({"every_n": 0}, ValueError, "every_n"),
        ({"every_n": 2.0}, TypeError, "every_n"),
        ({"momentum": 1.0}, ValueError, "momentum"),
        ({"inputs": "scores"}, ValueError, "inputs"),
        ({"temperature": -0.1}, ValueError, "temperature"),
    ],
)
def test_meter_rejects_bad_arguments(
    kwargs: Dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        EntropyMeter(**kwargs)


def test_meter_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        EntropyMeter().update(torch.randn(8))
    with pytest.raises(ValueError, match="same shape"):
        EntropyMeter().update(torch.randn(8, 4), torch.randn(8, 5))
    with pytest.raises(ValueError, match="sphere support"):
        EntropyMeter("discrete").update(torch.randn(8, 4), torch.randn(8, 4))
    with pytest.raises(ValueError, match="probabilities"):
        EntropyMeter("discrete", inputs="probabilities").update(torch.randn(8, 4))


# -- two processes ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gather_worker(rank: int, port: int, x: Tensor, x2: Tensor, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        rows = slice(0, 5) if rank == 0 else slice(5, 8)  # unequal batches
        gathered = gather_rows_no_grad(x[rows])
        meter = EntropyMeter(gather_distributed=True)
        metrics = meter.update(x[rows], x2[rows])
        # A single sample per process is measured as a batch of 2.
        small = EntropyMeter(gather_distributed=True).update(x[rank : rank + 1])
        torch.save(
            {"gathered": gathered, "metrics": metrics, "small": small},
            Path(out_dir) / f"{rank}.pt",
        )
    finally:
        torch_dist.destroy_process_group()


def test_meter_gathers_across_processes() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 6, generator=g)
    x2 = x + 0.2 * torch.randn(8, 6, generator=g)
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(
            _gather_worker,
            args=(_free_port(), x, x2, out_dir),
            nprocs=2,
            join=True,
            start_method="fork",
        )
        results = [torch.load(Path(out_dir) / f"{r}.pt") for r in range(2)]
    single = EntropyMeter().update(x, x2)
    single_small = EntropyMeter().update(x[:2])
    for result in results:
        assert torch.equal(result["gathered"], x)
        assert result["metrics"] == pytest.approx(single, rel=1e-6)
        assert result["small"] == pytest.approx(single_small, rel=1e-6)


def test_gather_rows_is_identity_in_one_process() -> None:
    x = torch.randn(3, 2)
    assert gather_rows_no_grad(x) is x


# ---------------------------------------------------------------------------------------
# EntropyMonitor
# ---------------------------------------------------------------------------------------
def _trainer(
    tmp_path: Path, callbacks: List[Any], max_steps: int, **kwargs: Any
) -> Trainer:
    options: Dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": max_steps,
        "logger": CSVLogger(tmp_path),
        "callbacks": callbacks,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "log_every_n_steps": 1,
    }
    options.update(kwargs)
    return Trainer(**options)


def _whitened(n: int, d: int, seed: int) -> Tensor:
    """n centred rows with X^T X / n = I exactly (up to rounding)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    q, _ = torch.linalg.qr(x - x.mean(dim=0))
    return (math.sqrt(n) * q).float()


class Collapsing(LightningModule):
    """A linear head pulled to a constant output by a squared loss.

    On whitened, centred inputs the gradient step with lr = out_dim / 2 sets the
    weights to 0 and the bias to the target exactly: the first step (global step 0)
    sees a healthy head, every later step a collapsed one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.projection_head = nn.Linear(8, 16)
        self.register_buffer("target", torch.linspace(0.5, 2.0, 16))

    def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
        (x,) = batch
        out = self.projection_head(x)
        return (out - self.target).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=8.0)


def _collapsing_data(steps: int) -> DataLoader[Tuple[Tensor, ...]]:
    x = _whitened(64, 8, seed=0)
    return DataLoader(TensorDataset(x.repeat(steps, 1)), batch_size=64)


def test_monitor_alarms_at_the_expected_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    every, patience = 2, 3
    monitor = EntropyMonitor(
        {"projection_head": "sphere"}, every_n_steps=every, patience=patience
    )
    trainer = _trainer(tmp_path, [monitor], max_steps=12)
    with pytest.warns(CollapseWarning) as record:
        trainer.fit(Collapsing(), _collapsing_data(12))
    # Checks at steps 0 (healthy), 2, 4, 6 (collapsed): the third collapsed check.
    expected_step = patience * every
    alarms = [w for w in record if issubclass(w.category, CollapseWarning)]
    assert len(alarms) == 1  # one alarm per streak
    message = str(alarms[0].message)
    assert "'projection_head'" in message and f"global step {expected_step}" in message
    assert "normalized_entropy" in message
    assert monitor.alarms == [
        CollapseAlarm(
            expected_step,
            "projection_head",
            "normalized_entropy",
            monitor.alarms[0].value,
            0.05,
        )
    ]
    assert monitor.alarms[0].value < 1e-4
    assert trainer.global_step == 12  # "warn" does not stop
    entropy = {s: v for s, m, k, v in monitor.history if k == "normalized_entropy"}
    assert sorted(entropy) == [0, 2, 4, 6, 8, 10]
    assert entropy[0] > 0.3
    assert all(entropy[s] < 1e-4 for s in (2, 4, 6, 8, 10))


def test_monitor_rank_alone_raises_the_alarm(tmp_path: Path) -> None:
    monitor = EntropyMonitor(
        {"projection_head": "sphere"},
        every_n_steps=1,
        patience=2,
        collapse_threshold=None,
        rank_threshold=1.5,
    )
    with pytest.warns(CollapseWarning, match="effective_rank"):
        _trainer(tmp_path, [monitor], max_steps=4).fit(
            Collapsing(), _collapsing_data(4)
        )
    assert [(a.step, a.metric) for a in monitor.alarms] == [(2, "effective_rank")]


def test_monitor_stop_ends_training_and_checkpoints(tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints")
    monitor = EntropyMonitor(
        {"projection_head": "sphere"}, every_n_steps=2, patience=2, on_collapse="stop"
    )
    trainer = _trainer(
        tmp_path, [monitor, checkpoint], max_steps=20, enable_checkpointing=True
    )
    with pytest.warns(CollapseWarning, match="stopping training"):
        trainer.fit(Collapsing(), _collapsing_data(20))
    # Alarm at the check of step 4; the batch of step 4 completes, then training ends.
    assert [a.step for a in monitor.alarms] == [4]
    assert trainer.global_step == 5 < 20
    files = list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert len(files) == 1
    assert torch.load(files[0], weights_only=False)["global_step"] == 5
    assert monitor.csv_path is not None and monitor.csv_path.exists()


class Contrastive(LightningModule):
    """SimCLR-like training on two noisy views of clustered data; keeps its outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.projection_head = nn.Sequential(
            nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)
        )
        self.criterion = NTXentLoss(temperature=0.5)
        self.outputs: Dict[int, Tuple[Tensor, Tensor]] = {}

    def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
        x0, x1 = batch
        z0, z1 = self.projection_head(x0), self.projection_head(x1)
        self.outputs.setdefault(
            self.global_step, (z0.detach().clone(), z1.detach().clone())
        )
        loss: Tensor = self.criterion(z0, z1)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _cluster_views(n_per_cluster: int = 16, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(8, 16, generator=g)
    x = centres.repeat_interleave(n_per_cluster, dim=0)
    x = x + 0.5 * torch.randn(x.shape, generator=g)
    view0 = x + 0.2 * torch.randn(x.shape, generator=g)
    view1 = x + 0.2 * torch.randn(x.shape, generator=g)
    return TensorDataset(view0, view1)


def test_monitor_healthy_training_does_not_alarm(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Contrastive()
    monitor = EntropyMonitor(
        {"projection_head": "sphere"}, every_n_steps=4, patience=1, kappa=5.0
    )
    loader = DataLoader(
        _cluster_views(), batch_size=32, shuffle=True, generator=torch.Generator()
    )
    trainer = _trainer(tmp_path, [monitor], max_steps=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        trainer.fit(model, loader)
    assert monitor.alarms == []
    # The logged values are those of the module's outputs at the due steps, with the
    # second call of the step as the second views.
    logged = {(s, k): v for s, m, k, v in monitor.history if m == "projection_head"}
    assert sorted({s for s, _ in logged}) == [0, 4, 8]
    for step in (0, 4, 8):
        z0, z1 = (normalize(z, dim=1) for z in model.outputs[step])
        entropy = sphere_entropy(z0, 5.0).item()
        minimum = -log_vmf_normalizer(8, 5.0).item() - 5.0
        assert logged[step, "entropy"] == pytest.approx(entropy, rel=1e-5)
        assert logged[step, "normalized_entropy"] == pytest.approx(
            (entropy - minimum) / math.log(32), rel=1e-5
        )
        assert logged[step, "alignment"] == pytest.approx(
            alignment(z0, z1).item(), rel=1e-5
        )
        assert logged[step, "normalized_entropy"] > 0.3
        assert logged[step, "effective_rank"] > 3.0
    # Logged through Lightning: the progress bar and the CSV logger.
    assert "entropy/projection_head/normalized_entropy" in trainer.progress_bar_metrics
    assert "entropy/projection_head/effective_rank" not in trainer.progress_bar_metrics
    assert "entropy/projection_head/alignment" in trainer.logged_metrics
    # The hook is gone after fit.
    assert not model.projection_head._forward_hooks


class BYOL(LightningModule):
    """A BYOL LightningModule as lightly's examples write it, on an MLP backbone."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.projection_head = BYOLProjectionHead(32, 64, 16)
        self.prediction_head = BYOLPredictionHead(16, 64, 16)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(y)
        p: Tensor = self.prediction_head(z)
        return p

    def forward_momentum(self, x: Tensor) -> Tensor:
        y = self.backbone_momentum(x).flatten(start_dim=1)
        z: Tensor = self.projection_head_momentum(y)
        return z.detach()

    def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
        update_momentum(self.backbone, self.backbone_momentum, m=0.99)
        update_momentum(self.projection_head, self.projection_head_momentum, m=0.99)
        x0, x1 = batch
        p0, z0 = self.forward(x0), self.forward_momentum(x0)
        p1, z1 = self.forward(x1), self.forward_momentum(x1)
        loss: Tensor = 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.06)


def _fit_byol(tmp_path: Path, callbacks: List[Any]) -> BYOL:
    torch.manual_seed(0)
    model = BYOL()
    loader = DataLoader(
        _cluster_views(seed=1),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    _trainer(tmp_path, callbacks, max_steps=6).fit(model, loader)
    return model


def test_monitor_on_lightly_byol_writes_csv_and_png(tmp_path: Path) -> None:
    modules = {"projection_head": "sphere", "prediction_head": "sphere"}
    monitor = EntropyMonitor(modules, every_n_steps=2)  # type: ignore[arg-type]
    monitored = _fit_byol(tmp_path / "monitored", [monitor])
    plain = _fit_byol(tmp_path / "plain", [])
    # Watching changes nothing in training.
    for a, b in zip(monitored.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)
    assert len(monitor.history) == 2 * 3 * 6  # modules x checks x metrics
    assert {(s, m) for s, m, _, _ in monitor.history} == {
        (s, m) for s in (0, 2, 4) for m in modules
    }
    # The files: in the logger's directory, complete, parseable, nothing left over.
    assert monitor.csv_path is not None and monitor.png_path is not None
    assert monitor.csv_path.parent == Path(monitor_log_dir(tmp_path / "monitored"))
    with open(monitor.csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [
        (int(r["step"]), r["module"], r["metric"], float(r["value"])) for r in rows
    ] == (monitor.history)
    png = monitor.png_path.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert not list(monitor.csv_path.parent.glob(".entropy_monitor*"))
    # Lightning's CSV logger got the values too.
    with open(monitor.csv_path.parent / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    assert "entropy/prediction_head/alignment" in header


def monitor_log_dir(save_dir: Path) -> str:
    return str(save_dir / "lightning_logs" / "version_0")


def test_monitor_picks_up_er_heads_automatically(tmp_path: Path) -> None:
    from lightly_er.models.modules import ERSimCLRProjectionHead

    class WithERHead(Contrastive):
        def __init__(self) -> None:
            super().__init__()
            self.projection_head = ERSimCLRProjectionHead(16, 32, 8, meter_every_n=3)

    torch.manual_seed(0)
    model = WithERHead()
    monitor = EntropyMonitor(every_n_steps=100)
    loader = DataLoader(_cluster_views(), batch_size=32, shuffle=False)
    _trainer(tmp_path, [monitor], max_steps=4).fit(model, loader)
    assert list(monitor.meters) == ["projection_head"]
    assert monitor.meters["projection_head"] is model.projection_head.entropy_meter
    assert not model.projection_head._forward_hooks  # read, never hooked
    # Two forward calls per step, a measurement every third call: calls 0, 3, 6 are
    # in steps 0, 1 and 3.
    steps = sorted({s for s, m, _, _ in monitor.history})
    assert steps == [0, 1, 3]
    last = {k: v for s, m, k, v in monitor.history if s == 3}
    assert last == model.projection_head.entropy_meter.latest


def test_monitor_reports_missing_module(tmp_path: Path) -> None:
    monitor = EntropyMonitor({"projector": "sphere"})
    with pytest.raises(ValueError, match=r"no submodule 'projector'.*projection_head"):
        _trainer(tmp_path, [monitor], max_steps=1).fit(
            Collapsing(), _collapsing_data(1)
        )


def test_monitor_watches_a_discrete_module_with_a_given_meter(tmp_path: Path) -> None:
    meter = EntropyMeter("discrete", temperature=1.0)
    monitor = EntropyMonitor({"projection_head": meter}, every_n_steps=1, patience=5)
    _trainer(tmp_path, [monitor], max_steps=3).fit(Collapsing(), _collapsing_data(3))
    assert monitor.meters == {"projection_head": meter}
    assert meter.num_updates == 3
    logged = {(s, k): v for s, m, k, v in monitor.history}
    assert {k for _, k in logged} == {
        "entropy",
        "normalized_entropy",
        "effective_rank",
        "std",
    }
    # After the first step every row is softmax(target): a single distribution.
    p = torch.softmax(torch.linspace(0.5, 2.0, 16), dim=0)
    entropy = -(p * p.log()).sum().item()
    assert logged[2, "entropy"] == pytest.approx(entropy, rel=1e-4)
    assert logged[2, "effective_rank"] == pytest.approx(1.0, abs=1e-4)
    assert logged[0, "effective_rank"] > 2.0


def test_monitor_rejects_a_support_that_contradicts_an_er_head(tmp_path: Path) -> None:
    from lightly_er.models.modules import ERSimCLRProjectionHead

    model = Collapsing()
    model.projection_head = ERSimCLRProjectionHead(8, 16, 16)  # type: ignore[assignment]
    monitor = EntropyMonitor({"projection_head": "discrete"})
    with pytest.raises(ValueError, match="owns an entropy_meter with support 'sphere'"):
        _trainer(tmp_path, [monitor], max_steps=1).fit(model, _collapsing_data(1))


def test_monitor_writes_csv_when_training_fails(tmp_path: Path) -> None:
    class Failing(Collapsing):
        def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
            if self.global_step == 5:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    model = Failing()
    monitor = EntropyMonitor(
        {"projection_head": "sphere"}, every_n_steps=2, log_dir=tmp_path / "out"
    )
    with pytest.raises(RuntimeError, match="boom"), warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)
        _trainer(tmp_path, [monitor], max_steps=10).fit(model, _collapsing_data(10))
    with open(tmp_path / "out" / EntropyMonitor.CSV_NAME, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted({int(r["step"]) for r in rows}) == [0, 2, 4]
    assert not model.projection_head._forward_hooks


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "values.csv"
    path.write_text("complete\n")

    def half_write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        monitoring._write_atomically(path, half_write)
    assert path.read_text() == "complete\n"
    assert os.listdir(tmp_path) == ["values.csv"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"modules": {"head": "ball"}}, ValueError, "support of module 'head'"),
        ({"modules": ["head"]}, TypeError, "mapping"),
        ({"every_n_steps": 0}, ValueError, "every_n_steps"),
        ({"patience": 0}, ValueError, "patience"),
        ({"on_collapse": "raise"}, ValueError, "on_collapse"),
        ({"collapse_threshold": math.nan}, ValueError, "collapse_threshold"),
        ({"kappa": -1.0}, ValueError, "kappa"),
    ],
)
def test_monitor_rejects_bad_arguments(
    kwargs: Dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        EntropyMonitor(**kwargs)
