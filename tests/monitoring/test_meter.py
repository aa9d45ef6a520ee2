"""Tests of lightly_er.monitoring.meter.EntropyMeter (plain PyTorch, no Lightning).

The references are the estimators of lightly_er.functional (tested on their own in
tests/test_functional.py), lightly's std_of_l2_normalized and closed forms.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import subprocess
import sys
import warnings
from collections import Counter
from typing import Any, Dict, List, Optional, Set, Tuple, get_args

import pytest
import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss
from lightly.utils.debug import std_of_l2_normalized
from torch import Tensor, nn
from torch.nn.functional import normalize

from lightly_er.functional import (
    SphereEstimator,
    alignment,
    collapse_score,
    dimension_score,
    discrete_entropy,
    effective_rank,
    min_sphere_entropy,
    participation_ratio,
    sphere_entropy,
    uniformity,
)
from lightly_er.functional._diagnostics import lidar
from lightly_er.loss import (
    ERDINOLoss,
    ERLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERSwaVLoss,
)
from lightly_er.monitoring import meter as meter_module
from lightly_er.monitoring.meter import (
    DISCRETE_METRICS,
    SPHERE_METRICS,
    EntropyMeter,
    MetricName,
)
from lightly_er.utils.checks import SPHERE_ESTIMATORS

F64 = torch.float64
SPHERE_KEYS = {
    "entropy",
    "entropy_gap",
    "normalized_entropy",
    "dimension_score",
    "participation_ratio",
    "collapse_score",
    "effective_rank",
    "std",
    "uniformity",
}
DISCRETE_KEYS = {
    "entropy",
    "normalized_entropy",
    "conditional_entropy",
    "mutual_information",
    "normalized_mutual_information",
    "prototype_usage",
    "collapse_score",
    "effective_rank",
    "std",
}

# -- no Lightning ----------------------------------------------------------------------
_IMPORT_PROBE = """
import json, sys
import lightly_er, lightly_er.models, lightly_er.monitoring.meter
import lightly_er.monitoring, lightly_er.utils, lightly_er.functional, lightly_er.loss
before = sorted({name.split(".")[0] for name in sys.modules} & {"pytorch_lightning", "lightning"})
monitor = lightly_er.EntropyMonitor  # the lazy attribute loads the callback
after = sorted({name.split(".")[0] for name in sys.modules} & {"pytorch_lightning", "lightning"})
from lightly_er.monitoring.callback import EntropyMonitor
print(json.dumps({
    "before": before,
    "after": after,
    "same": monitor is EntropyMonitor is lightly_er.monitoring.EntropyMonitor,
}))
"""


def test_importing_the_package_and_the_meter_loads_no_lightning() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,  # a guard against a hang, not a speed check
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["before"] == []
    # The probe itself works: asking for the callback does load Lightning.
    assert report["after"] == ["pytorch_lightning"]
    assert report["same"] is True


def test_meter_module_source_names_no_lightning() -> None:
    source = meter_module.__loader__.get_source(meter_module.__name__)  # type: ignore[union-attr]
    assert source is not None
    assert "lightning" not in source.replace("Lightning", "")


# -- sphere ----------------------------------------------------------------------------
def _views(n: int = 48, d: int = 12, seed: int = 0) -> Tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, x + 0.3 * torch.randn(n, d, generator=g)


def _expected_sphere(
    x: Tensor, x2: Optional[Tensor], kappa: float, estimator: str = "plugin"
) -> Dict[str, float]:
    """The documented sphere metrics, from the estimators, in float64."""
    n, d = x.shape
    z = normalize(x.double(), dim=1)
    entropy = sphere_entropy(z, kappa, estimator).item()  # type: ignore[arg-type]
    gap = entropy - min_sphere_entropy(d, kappa)
    expected = {
        "entropy": entropy,
        "entropy_gap": gap,
        "normalized_entropy": gap / math.log(n),
        "dimension_score": dimension_score(z).item(),
        "participation_ratio": participation_ratio(z).item(),
        "collapse_score": collapse_score(z).item(),
        "effective_rank": effective_rank(z).item(),
        "std": std_of_l2_normalized(x.double()).item(),
        "uniformity": uniformity(z).item(),
    }
    if n < 4:
        del expected["dimension_score"], expected["participation_ratio"]
    if x2 is not None:
        z2 = normalize(x2.double(), dim=1)
        expected["uniformity"] = 0.5 * (expected["uniformity"] + uniformity(z2).item())
        expected["alignment"] = alignment(z, z2).item()
        expected["lidar"] = lidar(torch.stack([z, z2], dim=1)).item()
    return expected


def _assert_metrics(
    got: Optional[Dict[str, float]], expected: Dict[str, float]
) -> None:
    assert got is not None
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-5, abs=1e-5), name


@pytest.mark.parametrize("estimator", ["plugin", "joe"])
@pytest.mark.parametrize("kappa", [2.0, 5.0, 40.0])
def test_sphere_metrics_with_two_views(kappa: float, estimator: str) -> None:
    x, x2 = _views()
    meter = EntropyMeter("sphere", kappa=kappa, estimator=estimator)  # type: ignore[arg-type]
    metrics = meter.update(x, x2)
    _assert_metrics(metrics, _expected_sphere(x, x2, kappa, estimator))
    assert metrics is not None and set(metrics) == SPHERE_KEYS | {"alignment", "lidar"}
    assert meter.latest == metrics and meter.num_updates == 1


def test_sphere_metrics_with_one_view() -> None:
    x, _ = _views(seed=1)
    metrics = EntropyMeter("sphere", kappa=5.0).update(x)
    _assert_metrics(metrics, _expected_sphere(x, None, 5.0))
    assert metrics is not None and set(metrics) == SPHERE_KEYS


def test_defaults_are_kappa_10_and_the_plugin_estimator() -> None:
    meter = EntropyMeter()
    assert meter.support == "sphere" and meter.estimator == "plugin"
    assert meter.kappa is None and meter.effective_kappa == 10.0
    assert meter.temperature is None and meter.effective_temperature == 0.1
    # Four tight clusters of unequal size: the two estimators differ.
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(4, 16, generator=g)
    x = centres.repeat_interleave(torch.tensor([20, 6, 4, 2]), dim=0)
    x = x + 0.05 * torch.randn(x.shape, generator=g)
    got = meter.compute(x)
    _assert_metrics(got, _expected_sphere(x, None, 10.0, "plugin"))
    joe = _expected_sphere(x, None, 10.0, "joe")
    assert got is not None and abs(got["entropy"] - joe["entropy"]) > 0.1


def test_entropy_gap_spans_zero_to_log_n() -> None:
    collapsed = EntropyMeter("sphere", kappa=10.0).update(3.0 * torch.ones(32, 8))
    assert collapsed is not None
    for name in ("entropy_gap", "normalized_entropy", "std", "uniformity"):
        assert collapsed[name] == pytest.approx(0.0, abs=1e-5), name
    assert collapsed["collapse_score"] == pytest.approx(0.0, abs=1e-6)
    assert collapsed["effective_rank"] == pytest.approx(1.0, abs=1e-4)
    assert collapsed["entropy"] == pytest.approx(min_sphere_entropy(8, 10.0), abs=1e-4)
    # Orthogonal points with a sharp kernel: the kernels do not overlap, gap = log N.
    separated = EntropyMeter("sphere", kappa=60.0).update(torch.eye(16))
    assert separated is not None
    assert separated["entropy_gap"] == pytest.approx(math.log(16), abs=1e-4)
    assert separated["normalized_entropy"] == pytest.approx(1.0, abs=1e-4)
    assert separated["effective_rank"] == pytest.approx(16.0, abs=1e-3)
    # Centered, 16 orthonormal rows span 15 affine dimensions of 15.
    assert separated["collapse_score"] == pytest.approx(
        (15 / 16) / (15 / 16 + 1e-3), abs=1e-5
    )


def test_sphere_measures_one_dimension() -> None:
    # S^0 = {-1, +1}: the losses accept d = 1 (issue 23), so the meter does too (it
    # rejected it before); its values are the estimators'.
    x = torch.tensor([[2.0], [-0.5], [1.0], [3.0], [-1.0], [0.2]])
    _assert_metrics(
        EntropyMeter("sphere", kappa=2.0).update(x), _expected_sphere(x, None, 2.0)
    )


# -- discrete --------------------------------------------------------------------------
def _expected_discrete(p: Tensor) -> Dict[str, float]:
    """The documented discrete metrics, from their definitions, in float64."""
    p = p.double()
    n, k = p.shape
    mean = p.mean(dim=0)
    entropy = -sum(m * math.log(m) for m in mean.tolist() if m > 0)
    assert entropy == pytest.approx(discrete_entropy(p).item(), abs=1e-9)
    conditional = (
        -sum(sum(q * math.log(q) for q in row if q > 0) for row in p.tolist()) / n
    )
    picks = Counter(p.argmax(dim=1).tolist())
    usage = math.exp(-sum(c / n * math.log(c / n) for c in picks.values()))
    return {
        "entropy": entropy,
        "normalized_entropy": entropy / math.log(k),
        "conditional_entropy": conditional,
        "mutual_information": entropy - conditional,
        "normalized_mutual_information": (entropy - conditional) / math.log(k),
        "prototype_usage": usage,
        "collapse_score": collapse_score(p).item(),
        "effective_rank": effective_rank(p).item(),
        "std": std_of_l2_normalized(p).item(),
    }


@pytest.mark.parametrize("temperature", [None, 0.5, 2.0])
def test_discrete_metrics_of_logits(temperature: Optional[float]) -> None:
    logits = torch.randn(40, 16, generator=torch.Generator().manual_seed(1))
    meter = EntropyMeter("discrete", temperature=temperature)
    metrics = meter.update(logits)
    p = torch.softmax(logits.double() / (temperature or 0.1), dim=1)
    _assert_metrics(metrics, _expected_discrete(p))
    assert metrics is not None and set(metrics) == DISCRETE_KEYS


def test_discrete_metrics_of_probabilities() -> None:
    logits = torch.randn(40, 16, generator=torch.Generator().manual_seed(3))
    p = torch.softmax(logits / 0.5, dim=1)
    metrics = EntropyMeter("discrete", inputs="probabilities").update(p)
    _assert_metrics(metrics, _expected_discrete(p))
    # The same rows as logits at their temperature.
    as_logits = EntropyMeter("discrete", temperature=0.5).compute(logits)
    assert as_logits == pytest.approx(metrics, rel=1e-5, abs=1e-6)


def test_discrete_extremes() -> None:
    one_class = torch.full((20, 10), -10.0)
    one_class[:, 3] = 10.0
    metrics = EntropyMeter("discrete", temperature=0.1).update(one_class)
    assert metrics is not None
    assert metrics["entropy"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["collapse_score"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["mutual_information"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["prototype_usage"] == 1.0
    # Every class used equally, each sample sure of its class: H = I = log K.
    uniform_use = 20.0 * torch.eye(10).repeat(3, 1)
    metrics = EntropyMeter("discrete").update(uniform_use)
    assert metrics is not None
    assert metrics["entropy"] == pytest.approx(math.log(10), abs=1e-6)
    assert metrics["normalized_entropy"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["normalized_mutual_information"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["prototype_usage"] == pytest.approx(10.0, rel=1e-6)
    assert metrics["effective_rank"] == pytest.approx(10.0, abs=1e-3)
    # Every input mapped to the uniform distribution: the marginal entropy is at
    # its maximum, the information 0 (what H(E[p]) alone reads as healthy).
    uniform = EntropyMeter("discrete").update(torch.zeros(20, 10))
    assert uniform is not None
    assert uniform["normalized_entropy"] == pytest.approx(1.0, abs=1e-6)
    assert uniform["conditional_entropy"] == pytest.approx(math.log(10), abs=1e-6)
    assert uniform["mutual_information"] == pytest.approx(0.0, abs=1e-6)


def test_log_probabilities_are_what_the_metrics_read() -> None:
    logits = torch.randn(12, 6, generator=torch.Generator().manual_seed(7))
    meter = EntropyMeter("discrete", temperature=0.5)
    expected = torch.log_softmax(logits / 0.5, dim=1)
    assert torch.allclose(meter.log_probabilities(logits), expected, atol=1e-6)
    p = torch.softmax(logits, dim=1)
    given = EntropyMeter("discrete", inputs="probabilities").log_probabilities(p)
    assert torch.allclose(given, p.log())
    with pytest.raises(ValueError, match="support='discrete'"):
        EntropyMeter("sphere").log_probabilities(logits)


def test_softmax_outputs_are_read_as_probabilities() -> None:
    """Rows that are already probabilities, fed to the default meter (inputs
    "auto"), give the metrics of the probabilities path, with one warning; read as
    logits (what the default did before) they give another information."""
    logits = torch.randn(64, 8, generator=torch.Generator().manual_seed(11))
    p = torch.softmax(logits / 0.5, dim=1)
    reference = EntropyMeter("discrete", inputs="probabilities").compute(p)
    meter = EntropyMeter("discrete")
    assert meter.inputs == "auto"
    with pytest.warns(UserWarning, match="already probabilities") as record:
        metrics = meter.update(p)
    assert len(record) == 1
    assert metrics == pytest.approx(reference, rel=1e-6, abs=1e-7)
    _assert_metrics(metrics, _expected_discrete(p))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per meter
        assert meter.update(p) == pytest.approx(reference, rel=1e-6, abs=1e-7)
        assert torch.allclose(meter.log_probabilities(p), p.log(), atol=1e-6)
        # Logits are not probabilities: no warning, the softmax at the temperature.
        as_logits = meter.compute(logits)
        forced = EntropyMeter("discrete", inputs="logits").compute(p)
    assert as_logits == pytest.approx(
        EntropyMeter("discrete", inputs="logits").compute(logits), rel=1e-6
    )
    # The quiet wrong answer the detection prevents: softmax(p / 0.1).
    key = "normalized_mutual_information"
    assert abs(forced[key] - reference[key]) > 0.05
    p_wrong = torch.softmax(p.double() / 0.1, dim=1)
    assert forced[key] == pytest.approx(_expected_discrete(p_wrong)[key], rel=1e-4)


def test_estimators_in_the_docstring_are_those_the_code_accepts() -> None:
    """The meter's docstring names every sphere estimator of the library, and the
    meter accepts and runs each."""
    names = get_args(SphereEstimator)
    assert set(names) == set(SPHERE_ESTIMATORS) and len(names) == 5
    doc = EntropyMeter.__doc__
    assert doc is not None
    section = doc[doc.index("        estimator:") : doc.index("        temperature:")]
    for name in names:
        assert f'``"{name}"``' in section, name
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(2))
    for name in names:
        metrics = EntropyMeter(estimator=name).compute(x)
        expected = sphere_entropy(normalize(x.double(), dim=1), 10.0, name).item()
        assert metrics["entropy"] == pytest.approx(expected, rel=1e-4, abs=1e-4), name


def test_metric_names_are_what_the_meter_returns() -> None:
    assert set(get_args(MetricName)) == (
        set(SPHERE_METRICS) | {"alignment", "lidar"} | set(DISCRETE_METRICS)
    )
    assert set(SPHERE_METRICS) == SPHERE_KEYS
    assert set(DISCRETE_METRICS) == DISCRETE_KEYS
    x, x2 = _views()
    sphere = EntropyMeter()
    assert tuple(sphere.compute(x)) == sphere.metric_names()
    assert tuple(sphere.compute(x, x2)) == sphere.metric_names(second_views=True)
    discrete = EntropyMeter("discrete")
    assert tuple(discrete.compute(x)) == discrete.metric_names() == DISCRETE_METRICS


def test_discrete_rejects_one_class_and_second_views() -> None:
    with pytest.raises(ValueError, match=r"x must have >= 2 columns \(classes\)"):
        EntropyMeter("discrete").update(torch.randn(8, 1))
    with pytest.raises(ValueError, match="sphere support"):
        EntropyMeter("discrete").update(torch.randn(8, 4), torch.randn(8, 4))
    with pytest.raises(ValueError, match=r"x \(inputs='probabilities'\)"):
        EntropyMeter("discrete", inputs="probabilities").update(torch.randn(8, 4))


# -- state -----------------------------------------------------------------------------
def test_update_measures_every_call() -> None:
    meter = EntropyMeter()
    assert not hasattr(meter, "every_n")
    with pytest.raises(TypeError):
        EntropyMeter(every_n=3)  # type: ignore[call-arg]
    g = torch.Generator().manual_seed(4)
    batches = [torch.randn(8, 4, generator=g) for _ in range(7)]
    results = [meter.update(b) for b in batches]
    assert all(r is not None for r in results)
    assert meter.num_updates == 7
    assert meter.latest == EntropyMeter().compute(batches[-1])
    meter.reset()
    assert (meter.num_updates, meter.latest, meter.running) == (0, {}, {})


def test_compute_leaves_the_state_alone() -> None:
    meter = EntropyMeter()
    metrics = meter.compute(torch.randn(8, 4))
    assert metrics is not None
    assert (meter.num_updates, meter.latest, meter.running) == (0, {}, {})


def test_running_averages() -> None:
    g = torch.Generator().manual_seed(2)
    batches = [torch.randn(16, 6, generator=g) * (i + 1) ** 2 for i in range(4)]
    batches[2] = torch.ones(16, 6)  # a collapsed batch moves the averages a lot
    meter = EntropyMeter(momentum=0.75)
    values = [meter.update(b) for b in batches]
    for name in SPHERE_KEYS:
        expected = values[0][name]
        for v in values[1:]:
            expected = 0.75 * expected + 0.25 * v[name]
        assert meter.running[name] == pytest.approx(expected, rel=1e-12), name
    # A metric that appears later starts its average at its first value.
    pair = meter.update(batches[0], batches[1])
    assert pair is not None and meter.running["alignment"] == pair["alignment"]
    # momentum = 0: the average is the latest value.
    fresh = EntropyMeter(momentum=0.0)
    fresh.update(batches[0])
    last = fresh.update(batches[1])
    assert fresh.running == last


def _all_nan(metrics: Dict[str, float], keys: Set[str]) -> bool:
    return set(metrics) == keys and all(math.isnan(v) for v in metrics.values())


@pytest.mark.parametrize("rows", [0, 1])
def test_too_few_rows_say_not_measured_once(rows: int) -> None:
    """0 or 1 rows: a dict with NaN for every key (a lookup does not fail), one
    warning per meter, and the state unchanged."""
    meter = EntropyMeter()
    with pytest.warns(UserWarning, match=f"at least 2 rows .* got {rows}") as record:
        metrics = meter.update(torch.randn(rows, 8))
    assert len(record) == 1
    assert _all_nan(metrics, SPHERE_KEYS)
    assert math.isnan(metrics["collapse_score"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: no second warning
        again = meter.update(torch.randn(rows, 8), torch.randn(rows, 8))
        flat = meter.compute(torch.randn(rows, 2, 4))  # flattened, 0 rows included
    assert _all_nan(again, SPHERE_KEYS | {"alignment", "lidar"})
    assert _all_nan(flat, SPHERE_KEYS)
    assert (meter.num_updates, meter.latest, meter.running) == (0, {}, {})
    discrete = EntropyMeter("discrete")
    with pytest.warns(UserWarning, match="not measured"):
        assert _all_nan(discrete.update(torch.randn(rows, 5)), DISCRETE_KEYS)
    # A measurable batch afterwards is measured as usual.
    assert math.isfinite(meter.update(torch.randn(4, 8))["dimension_score"])
    assert meter.num_updates == 1


def test_fewer_than_four_rows_leave_the_dimension_score_unmeasured() -> None:
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    meter = EntropyMeter()
    with pytest.warns(UserWarning, match="at least 4 rows for dimension_score"):
        metrics = meter.update(x)
    assert set(metrics) == SPHERE_KEYS
    unmeasured = {k for k, v in metrics.items() if math.isnan(v)}
    assert unmeasured == {"dimension_score", "participation_ratio"}
    z = normalize(x.double(), dim=1)
    assert metrics["entropy"] == pytest.approx(sphere_entropy(z, 10.0).item(), 1e-5)
    assert metrics["collapse_score"] == pytest.approx(
        collapse_score(z).item(), abs=1e-5
    )
    assert metrics["effective_rank"] == pytest.approx(
        effective_rank(z).item(), rel=1e-5
    )
    # The moving averages skip what was not measured.
    assert set(meter.running) == SPHERE_KEYS - unmeasured
    full = meter.update(torch.randn(8, 8))
    assert meter.running["dimension_score"] == full["dimension_score"]


def test_non_finite_batches_are_not_measured() -> None:
    meter = EntropyMeter()
    with pytest.warns(UserWarning, match="NaN or Inf"):
        assert _all_nan(meter.update(torch.full((4, 8), math.nan)), SPHERE_KEYS)
    x = torch.randn(4, 8)
    with pytest.warns(UserWarning, match="NaN or Inf"):
        metrics = meter.update(x, torch.full((4, 8), math.inf))
    assert _all_nan(metrics, SPHERE_KEYS | {"alignment", "lidar"})
    assert (meter.num_updates, meter.latest, meter.running) == (0, {}, {})


def test_inputs_are_cast_and_flattened() -> None:
    x = torch.randn(16, 2, 3, dtype=F64)
    reference = EntropyMeter().compute(x.reshape(16, 6).float())
    assert EntropyMeter().compute(x) == reference
    low = EntropyMeter().compute(x.to(torch.bfloat16))
    assert low is not None and reference is not None
    assert low["entropy"] == pytest.approx(reference["entropy"], rel=1e-2)
    assert all(isinstance(v, float) for v in reference.values())


def test_the_meter_has_no_effect_on_training() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    x = torch.randn(32, 8)

    def step(meter: Optional[EntropyMeter]) -> Tuple[Tensor, List[Tensor]]:
        model.zero_grad()
        out = model(x)
        if meter is not None:
            before = out.detach().clone()
            saved: List[Tensor] = []

            def pack(t: Tensor) -> Tensor:
                saved.append(t)
                return t

            second = torch.tanh(out)  # another differentiable view
            # No autograd inside the meter: nothing is saved for backward.
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                assert meter.update(out, second) is not None
            assert saved == []
            assert torch.equal(out, before) and out.grad_fn is not None
        out.pow(2).sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return out.detach(), grads

    out_plain, grads_plain = step(None)
    out_metered, grads_metered = step(EntropyMeter())
    assert torch.equal(out_plain, out_metered)
    assert len(grads_plain) == 4
    for a, b in zip(grads_plain, grads_metered, strict=True):
        assert torch.equal(a, b)


def test_copies_and_pickles_are_independent() -> None:
    meter = EntropyMeter(kappa=3.0)
    meter.update(torch.randn(8, 4))
    clone = copy.deepcopy(meter)
    clone.update(torch.randn(8, 4))
    assert (meter.num_updates, clone.num_updates) == (1, 2)
    restored = pickle.loads(pickle.dumps(meter))
    assert restored.latest == meter.latest and restored.kappa == 3.0


def test_settings_and_repr() -> None:
    assert EntropyMeter(kappa=4.0, estimator="joe").settings() == {
        "support": "sphere",
        "kappa": 4.0,
        "estimator": "joe",
    }
    assert EntropyMeter().settings()["kappa"] == 10.0
    assert EntropyMeter("discrete").settings() == {
        "support": "discrete",
        "temperature": 0.1,
    }
    assert repr(EntropyMeter(kappa=4.0)) == (
        "EntropyMeter(support='sphere', kappa=4, estimator='plugin')"
    )
    assert repr(EntropyMeter("discrete", temperature=0.2)) == (
        "EntropyMeter(support='discrete', inputs='auto', temperature=0.2)"
    )


# -- for_loss --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "criterion, expected",
    [
        (NTXentLoss(temperature=0.2), ("sphere", 5.0, None)),
        (NTXentLoss(temperature=0.5), ("sphere", 2.0, None)),
        (ERNTXentLoss(temperature=0.2), ("sphere", 5.0, None)),
        (ERNTXentLoss(temperature=0.2, kappa=3.0), ("sphere", 3.0, None)),
        (NegativeCosineSimilarity(), ("sphere", 10.0, None)),
        (ERNegativeCosineSimilarity(kappa=7.0), ("sphere", 7.0, None)),
        (ERLoss("sphere", kappa=4.0), ("sphere", 4.0, None)),
        (DINOLoss(output_dim=8, student_temp=0.2), ("discrete", None, 0.2)),
        (ERDINOLoss(output_dim=8, student_temp=0.3), ("discrete", None, 0.3)),
        (SwaVLoss(temperature=0.2), ("discrete", None, 0.2)),
        (ERSwaVLoss(temperature=0.25), ("discrete", None, 0.25)),
        (ERLoss("discrete", temperature=0.4), ("discrete", None, 0.4)),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, nn.Module) else "",
)
def test_for_loss_follows_the_kappa_rule(
    criterion: nn.Module, expected: Tuple[str, Optional[float], Optional[float]]
) -> None:
    meter = EntropyMeter.for_loss(criterion)
    assert (meter.support, meter.kappa, meter.temperature) == expected


def test_for_loss_keeps_the_estimator_and_overrides() -> None:
    meter = EntropyMeter.for_loss(ERNTXentLoss(temperature=0.2, estimator="joe"))
    assert meter.estimator == "joe"
    meter = EntropyMeter.for_loss(NTXentLoss(temperature=0.2), kappa=7.0, momentum=0.5)
    assert (meter.kappa, meter.momentum) == (7.0, 0.5)


def test_for_loss_of_an_unknown_criterion() -> None:
    with pytest.raises(
        ValueError, match="no entropy settings are known for criterion MSELoss"
    ):
        EntropyMeter.for_loss(nn.MSELoss())
    meter = EntropyMeter.for_loss(nn.MSELoss(), support="discrete", temperature=0.3)
    assert (meter.support, meter.temperature) == ("discrete", 0.3)


# -- gathering -------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:EntropyMeter needs at least 4 rows")
def test_gather_distributed_measures_the_gathered_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    g = torch.Generator().manual_seed(5)
    others = torch.randn(5, 6, generator=g)  # what the other processes hold
    calls: List[Tuple[int, ...]] = []

    def gather(x: Tensor) -> Tensor:
        calls.append(tuple(x.shape))
        return torch.cat([x, others])

    monkeypatch.setattr(meter_module, "gather_rows_no_grad", gather)
    x, x2 = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    metrics = EntropyMeter(gather_distributed=True).update(x, x2)
    assert calls == [(3, 6), (3, 6)]
    reference = EntropyMeter().compute(torch.cat([x, others]), torch.cat([x2, others]))
    assert metrics == reference
    # One row per process is measured as the gathered batch.
    calls.clear()
    single = EntropyMeter(gather_distributed=True).update(x[:1])
    assert single == EntropyMeter().compute(torch.cat([x[:1], others]))
    # Without gathering nothing is exchanged.
    calls.clear()
    EntropyMeter().update(x)
    assert calls == []


def test_gather_distributed_in_one_process_is_the_local_batch() -> None:
    x = torch.randn(10, 4)
    assert EntropyMeter(gather_distributed=True).compute(x) == EntropyMeter().compute(x)


# -- arguments -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"support": "ball"}, ValueError, "support"),
        ({"support": 1}, TypeError, "support"),
        ({"kappa": 0.0}, ValueError, "kappa"),
        ({"kappa": math.inf}, ValueError, "kappa"),
        ({"estimator": "kde"}, ValueError, "estimator"),
        ({"temperature": -0.1}, ValueError, "temperature"),
        ({"inputs": "scores"}, ValueError, "inputs"),
        ({"momentum": 1.0}, ValueError, "momentum"),
        ({"momentum": -0.1}, ValueError, "momentum"),
        ({"momentum": True}, TypeError, "momentum"),
        ({"resolution": 0.0}, ValueError, "resolution"),
        ({"gather_distributed": 1}, TypeError, "gather_distributed"),
    ],
)
def test_bad_arguments_are_rejected(
    kwargs: Dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        EntropyMeter(**kwargs)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"x must have shape"):
        EntropyMeter().update(torch.randn(8))
    with pytest.raises(TypeError, match="x must be a floating point"):
        EntropyMeter().update(torch.ones(8, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        EntropyMeter().update([[1.0, 2.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same shape"):
        EntropyMeter().update(torch.randn(8, 4), torch.randn(8, 5))


def test_resolution_reaches_the_collapse_score() -> None:
    x = torch.ones(16, 8) + 1e-3 * torch.randn(16, 8)
    coarse = EntropyMeter().compute(x)
    fine = EntropyMeter(resolution=1e-9).compute(x)
    assert coarse is not None and fine is not None
    assert coarse["collapse_score"] == pytest.approx(collapse_score(x).item(), 1e-5)
    assert fine["collapse_score"] == pytest.approx(
        collapse_score(x, resolution=1e-9).item(), rel=1e-5
    )
    assert fine["collapse_score"] > coarse["collapse_score"] + 0.3


def test_the_package_exports() -> None:
    import lightly_er.monitoring as monitoring

    assert monitoring.EntropyMeter is EntropyMeter
    # gather_rows_no_grad is lightly_er.utils's (lightly_er.utils.dist), no longer
    # re-exported here.
    assert not hasattr(monitoring, "gather_rows_no_grad")
    assert set(monitoring.__all__) == {
        "DEFAULT_RULES",
        "AlarmRule",
        "CollapseAlarm",
        "CollapseWarning",
        "EntropyMeter",
        "EntropyMonitor",
        "MetricName",
        "MonitorMetric",
        "Support",
        "entropy_settings",
        "resolve_kappa",
    }
    with pytest.raises(AttributeError, match="has no attribute 'EntropyMonitr'"):
        monitoring.EntropyMonitr  # noqa: B018
