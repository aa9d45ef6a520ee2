import math

import pytest
import torch
from torch.nn.functional import normalize

from lightly.loss import DINOLoss, ERNTXentLoss, NTXentLoss
from lightly.utils.entropy_meter import EntropyMeter
from lightly.utils.entropy_reconstruction import min_sphere_entropy, sphere_entropy


class TestEntropyMeter:
    def test_sphere_metrics_equal_the_estimators(self) -> None:
        x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
        meter = EntropyMeter("sphere", kappa=5.0)
        metrics = meter.update(x)
        assert metrics is not None
        entropy = sphere_entropy(normalize(x, dim=1), kappa=5.0).item()
        assert metrics["entropy"] == pytest.approx(entropy, rel=1e-5)
        gap = entropy - min_sphere_entropy(8, 5.0)
        assert metrics["entropy_gap"] == pytest.approx(gap, rel=1e-4)
        assert metrics["normalized_entropy"] == pytest.approx(
            gap / math.log(32), rel=1e-4
        )

    def test_collapsed_batch(self) -> None:
        metrics = EntropyMeter("sphere").update(torch.ones(16, 8))
        assert metrics is not None
        assert metrics["entropy_gap"] == pytest.approx(0.0, abs=1e-5)
        assert metrics["collapse_score"] == pytest.approx(0.0, abs=1e-6)

    def test_discrete_uniform_batch(self) -> None:
        meter = EntropyMeter("discrete", inputs="probabilities")
        metrics = meter.update(torch.eye(6))
        assert metrics is not None
        assert metrics["entropy"] == pytest.approx(math.log(6), rel=1e-6)
        assert metrics["normalized_entropy"] == pytest.approx(1.0, rel=1e-6)

    def test_running_average(self) -> None:
        meter = EntropyMeter("sphere", momentum=0.5)
        first = meter.update(torch.randn(16, 4))
        second = meter.update(torch.ones(16, 4))
        assert first is not None and second is not None
        expected = 0.5 * first["collapse_score"] + 0.5 * second["collapse_score"]
        assert meter.running["collapse_score"] == pytest.approx(expected)
        assert meter.num_updates == 2

    def test_single_sample_is_not_measured(self) -> None:
        meter = EntropyMeter("sphere")
        with pytest.warns(UserWarning):
            values = meter.update(torch.randn(1, 4))
        assert values and all(math.isnan(v) for v in values.values())
        assert meter.num_updates == 0

    def test_for_loss_uses_the_loss_kappa(self) -> None:
        # The original loss and its ER version are measured alike.
        assert EntropyMeter.for_loss(NTXentLoss(temperature=0.25)).kappa == 4.0
        assert EntropyMeter.for_loss(ERNTXentLoss(temperature=0.25)).kappa == 4.0
        meter = EntropyMeter.for_loss(DINOLoss(output_dim=8, student_temp=0.2))
        assert meter.support == "discrete" and meter.temperature == 0.2
