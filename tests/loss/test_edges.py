"""Every ER loss at the edges its lightly parent accepts: batch 1, dimension 1, a
non-positive NT-Xent temperature, and float32 at d = 65,536.

The values are held against closed forms (S^0 = {-1, +1} has C_1 = 1 / (2 cosh
kappa)), against the functional estimators called directly, and against float64.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, List, Tuple

import pytest
import torch
from torch import Tensor, nn
from torch.nn.functional import normalize

from lightly_er.experimental import EntropyEstimator
from lightly_er.functional import (
    discrete_entropy,
    min_sphere_entropy,
    sphere_entropy,
    vmf_reconstruction,
)
from lightly_er.loss import (
    DEFAULT_KAPPA,
    ERDINOLoss,
    ERLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERSwaVLoss,
)

F64 = torch.float64


def _log_c1(kappa: float) -> float:
    return -kappa - math.log1p(math.exp(-2.0 * kappa))


def _pair(n: int, d: int, seed: int = 0) -> Tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randn(
        n, d, generator=g, dtype=F64
    )


def _single_sample_warnings(record: List[warnings.WarningMessage]) -> int:
    return sum("batch of 1 sample" in str(w.message) for w in record)


# -- batch size 1 ----------------------------------------------------------------------
SPHERE_LOSSES: Dict[str, Callable[[float], nn.Module]] = {
    "ERLoss": lambda weight: ERLoss(kappa=4.0, entropy_weight=weight),
    "ERNTXentLoss": lambda weight: ERNTXentLoss(0.25, entropy_weight=weight),
    "ERNegativeCosineSimilarity": lambda weight: ERNegativeCosineSimilarity(
        kappa=4.0, entropy_weight=weight
    ),
}


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("weight", [0.0, 1.0])
@pytest.mark.parametrize("name", sorted(SPHERE_LOSSES))
def test_sphere_losses_at_batch_one(
    name: str, weight: float, leave_one_out: bool
) -> None:
    loss_fn = SPHERE_LOSSES[name](weight)
    loss_fn.leave_one_out = leave_one_out
    out0, out1 = _pair(1, 16)
    out0.requires_grad_(True)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        components = loss_fn.forward_components(out0, out1)
        components.loss.backward()
        loss_fn(out0.detach(), out1)  # a second call warns no more
    assert _single_sample_warnings(record) == 1
    # One sample: one kernel, the estimate is H_min (the self-term is kept even with
    # leave_one_out, which has no other sample to use).
    kappa = loss_fn.kappa
    assert components.entropy.item() == pytest.approx(
        min_sphere_entropy(16, kappa), rel=1e-12
    )
    z0, z1 = normalize(out0.detach(), dim=1), normalize(out1, dim=1)
    reconstruction = vmf_reconstruction(z1, z0, kappa).item()
    assert components.reconstruction.item() == pytest.approx(reconstruction, rel=1e-12)
    scale = kappa if name == "ERNegativeCosineSimilarity" else 1.0
    expected = -(weight * min_sphere_entropy(16, kappa) + reconstruction) / scale
    assert components.loss.item() == pytest.approx(expected, rel=1e-12)
    # The entropy of one sample has no gradient: only the reconstruction's remains.
    assert out0.grad is not None and torch.isfinite(out0.grad).all()


def test_moco_bank_joins_the_estimate_at_batch_one() -> None:
    loss_fn = ERNTXentLoss(0.2, memory_bank_size=(64, 8))
    queries = torch.randn(1, 8, dtype=F64, requires_grad=True)
    keys = torch.randn(1, 8, dtype=F64)
    bank = normalize(loss_fn.memory_bank.bank.clone(), dim=1).to(F64)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        components = loss_fn.forward_components(queries, keys)
    assert _single_sample_warnings(record) == 0
    z0 = normalize(queries.detach(), dim=1)
    expected = sphere_entropy(z0, 5.0, extra_support=bank).item()
    assert components.entropy.item() == pytest.approx(expected, rel=1e-10)
    assert components.entropy.item() > min_sphere_entropy(8, 5.0) + 1.0  # a real one
    components.loss.backward()
    assert queries.grad is not None and queries.grad.abs().sum() > 0


def test_moco_with_leave_one_out_uses_the_bank_at_batch_one() -> None:
    loss_fn = ERNTXentLoss(
        0.2, memory_bank_size=(16, 4), estimator=EntropyEstimator(leave_one_out=True)
    )
    queries, keys = torch.randn(1, 4, dtype=F64), torch.randn(1, 4, dtype=F64)
    bank = normalize(loss_fn.memory_bank.bank.clone(), dim=1).to(F64)
    got = loss_fn.forward_components(queries, keys).entropy.item()
    z0 = normalize(queries, dim=1)
    expected = sphere_entropy(z0, 5.0, leave_one_out=True, extra_support=bank)
    assert got == pytest.approx(expected.item(), rel=1e-10)


def test_two_samples_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for loss_fn in (ERLoss(), ERNTXentLoss(), ERNegativeCosineSimilarity()):
            loss_fn(*_pair(2, 8))


def test_discrete_losses_at_batch_one() -> None:
    g = torch.Generator().manual_seed(3)
    # ERLoss on a discrete support: the marginal of one sample is its distribution.
    out0, out1 = (
        torch.randn(1, 6, generator=g, dtype=F64),
        torch.randn(1, 6, generator=g, dtype=F64),
    )
    components = ERLoss(support="discrete", temperature=0.5).forward_components(
        out0, out1
    )
    p0, p1 = torch.softmax(out0 / 0.5, dim=1), torch.softmax(out1 / 0.5, dim=1)
    entropy = 0.5 * (discrete_entropy(p0) + discrete_entropy(p1))
    assert components.entropy.item() == pytest.approx(entropy.item(), rel=1e-12)
    # DINO-ER and SwAV-ER (with and without the queue and Sinkhorn), lightly's shapes.
    teacher = [torch.randn(1, 6, generator=g) for _ in range(2)]
    student = [torch.randn(1, 6, generator=g, requires_grad=True) for _ in range(4)]
    for centering in (False, True):
        loss = ERDINOLoss(output_dim=6, centering=centering)(teacher, student, epoch=0)
        loss.backward()
        assert torch.isfinite(loss)
    high = [torch.randn(1, 6, generator=g, requires_grad=True) for _ in range(2)]
    low = [torch.randn(1, 6, generator=g, requires_grad=True) for _ in range(3)]
    queue = [torch.randn(8, 6, generator=g) for _ in range(2)]
    for use_sinkhorn in (False, True):
        swav = ERSwaVLoss(use_sinkhorn=use_sinkhorn)
        for q in (None, queue):
            loss = swav(high, low, q)
            loss.backward()
            assert torch.isfinite(loss)


# -- dimension 1 -----------------------------------------------------------------------
def _s0_rows(signs: List[float]) -> Tensor:
    return torch.tensor([[2.5 * s] for s in signs], dtype=F64)  # any positive scale


def _s0_entropy(z: Tensor, kappa: float) -> float:
    """Plug-in KDE entropy of +-1 rows by counting (no matrix code)."""
    signs = [float(v) for v in z.flatten()]
    n = len(signs)
    logs = []
    for s in signs:
        same = sum(1 for t in signs if t == s)
        other = n - same
        logs.append(
            _log_c1(kappa)
            + math.log(same * math.exp(kappa) + other * math.exp(-kappa))
            - math.log(n)
        )
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = sum(weights)
    return -sum(w / total * v for w, v in zip(weights, logs, strict=True))


def test_ntxent_and_er_loss_on_s0_match_the_closed_form() -> None:
    signs0 = [1.0, -1.0, 1.0, 1.0, -1.0]
    signs1 = [1.0, 1.0, 1.0, -1.0, -1.0]
    out0, out1 = _s0_rows(signs0), _s0_rows(signs1)
    z0, z1 = torch.sign(out0), torch.sign(out1)
    mean_cos = sum(a * b for a, b in zip(signs0, signs1, strict=True)) / 5
    for loss_fn, kappa in ((ERNTXentLoss(0.5), 2.0), (ERLoss(kappa=3.0), 3.0)):
        components = loss_fn.forward_components(out0, out1)
        entropy = 0.5 * (_s0_entropy(z0, kappa) + _s0_entropy(z1, kappa))
        reconstruction = _log_c1(kappa) + kappa * mean_cos
        assert components.entropy.item() == pytest.approx(entropy, rel=1e-12)
        assert components.reconstruction.item() == pytest.approx(
            reconstruction, rel=1e-12
        )
        assert components.loss.item() == pytest.approx(
            -(entropy + reconstruction), rel=1e-12
        )


def test_negative_cosine_on_s0_matches_the_closed_form() -> None:
    prediction = _s0_rows([1.0, -1.0, -1.0]).requires_grad_(True)
    target = _s0_rows([1.0, 1.0, -1.0])
    components = ERNegativeCosineSimilarity(kappa=2.0).forward_components(
        prediction, target
    )
    reconstruction = _log_c1(2.0) + 2.0 * (1 - 1 + 1) / 3
    entropy = _s0_entropy(torch.sign(prediction.detach()), 2.0)
    assert components.entropy.item() == pytest.approx(entropy, rel=1e-12)
    assert components.reconstruction.item() == pytest.approx(reconstruction, rel=1e-12)
    assert components.loss.item() == pytest.approx(
        -(entropy + reconstruction) / 2.0, rel=1e-12
    )


def test_moco_on_s0_and_discrete_losses_with_one_class() -> None:
    loss_fn = ERNTXentLoss(0.1, memory_bank_size=(8, 1))
    assert torch.isfinite(
        loss_fn(torch.randn(4, 1, requires_grad=True), torch.randn(4, 1))
    )
    # One class (DINO's output_dim=1, SwAV's single prototype): both terms are 0.
    one = [torch.randn(4, 1, requires_grad=True) for _ in range(3)]
    dino = ERDINOLoss(output_dim=1, centering=False).forward_components(one[:2], one)
    swav = ERSwaVLoss(use_sinkhorn=False).forward_components(one[:2], one[2:])
    discrete = ERLoss(support="discrete").forward_components(one[0], one[1])
    for components in (dino, swav, discrete):
        assert components.loss.item() == pytest.approx(0.0, abs=1e-6)
        assert components.entropy.item() == pytest.approx(0.0, abs=1e-6)


# -- a non-positive temperature ---------------------------------------------------------
@pytest.mark.parametrize("temperature", [-1.0, -0.5])
def test_ntxent_accepts_a_negative_temperature(temperature: float) -> None:
    with pytest.warns(UserWarning, match="kappa cannot be 1 / temperature"):
        loss_fn = ERNTXentLoss(temperature=temperature)
    assert loss_fn.kappa == DEFAULT_KAPPA and loss_fn.temperature == temperature
    out0, out1 = _pair(6, 8)
    reference = ERNTXentLoss(kappa=DEFAULT_KAPPA)
    assert loss_fn(out0, out1).item() == pytest.approx(
        reference(out0, out1).item(), rel=1e-12
    )
    # An explicit kappa wins and needs no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ERNTXentLoss(temperature=temperature, kappa=3.0).kappa == 3.0


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: ERLoss(support="discrete", temperature=-0.1), "temperature"),
        (
            lambda: ERDINOLoss(output_dim=4, student_temp=-0.1, centering=False),
            "student_temp",
        ),
        (
            lambda: ERDINOLoss(output_dim=4, teacher_temp=-0.1, centering=False),
            "teacher_temp",
        ),
        (lambda: ERSwaVLoss(temperature=-0.1, use_sinkhorn=False), "temperature"),
        (lambda: ERNTXentLoss(temperature=0.0), "temperature"),  # the parent's check
    ],
)
def test_softmax_temperatures_must_stay_positive(
    make: Callable[[], nn.Module], name: str
) -> None:
    # A negative softmax temperature would invert the distribution (lightly's
    # DINOLoss and SwaVLoss do not check it, nor test it): a clear error instead.
    with pytest.raises(ValueError, match=name):
        make()


# -- float32 at very large d --------------------------------------------------------------
LARGE_D = 65536


def _relative_error(got: Tensor, expected: Tensor) -> float:
    return float((got.double() - expected).norm() / expected.norm())


@pytest.mark.parametrize("weight", [1.0, 0.5])
@pytest.mark.parametrize(
    "make",
    [
        lambda w: ERNTXentLoss(0.5, entropy_weight=w),
        lambda w: ERNTXentLoss(0.1, entropy_weight=w),
        lambda w: ERNTXentLoss(0.1, memory_bank_size=(16, LARGE_D), entropy_weight=w),
        lambda w: ERLoss(kappa=10.0, entropy_weight=w),
        lambda w: ERNegativeCosineSimilarity(kappa=10.0, entropy_weight=w),
    ],
    ids=["SimCLR-ER-kappa2", "SimCLR-ER-kappa10", "MoCo-ER", "ERLoss", "BYOL-ER"],
)
def test_float32_at_d_65536_matches_float64(
    make: Callable[[float], nn.Module], weight: float
) -> None:
    # Three clusters of close points: their log-densities differ by less than the
    # float32 resolution of log C_d(kappa) (about 270,000 nats, resolved to 1/32),
    # so the plug-in weights go wrong if the constant enters them (1e-2 errors).
    g = torch.Generator().manual_seed(7)
    centers = torch.randn(3, LARGE_D, generator=g)
    base = centers[torch.arange(8) % 3] + 0.2 * torch.randn(8, LARGE_D, generator=g)
    out0 = (base + 0.2 * torch.randn(8, LARGE_D, generator=g)).float()
    out1 = (base + 0.2 * torch.randn(8, LARGE_D, generator=g)).float()
    results = {}
    for dtype in (torch.float32, F64):
        torch.manual_seed(0)  # the same memory bank in both precisions
        loss_fn = make(weight)
        x0 = out0.to(dtype).detach().clone().requires_grad_(True)
        x1 = out1.to(dtype).detach().clone().requires_grad_(True)
        loss = loss_fn(x0, x1)
        loss.backward()
        assert loss.dtype == dtype
        results[dtype] = (loss.detach(), x0.grad, x1.grad)
    (loss32, g0_32, g1_32), (loss64, g0_64, g1_64) = (
        results[torch.float32],
        results[F64],
    )
    assert abs(loss32.double().item() - loss64.item()) <= 1e-4 * abs(loss64.item())
    for got, expected in ((g0_32, g0_64), (g1_32, g1_64)):
        assert got is not None and expected is not None
        assert _relative_error(got, expected) <= 1e-4
