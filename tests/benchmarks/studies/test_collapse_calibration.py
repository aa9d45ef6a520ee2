"""Calibration of the collapse score against batches whose state is known.

Real images: scikit-learn's digits always, Fashion-MNIST where its files are in the
default folder (CI installs Debian's package and names its folder in
LIGHTLY_ER_DATA_DIR). The default alarm is the monitor's: a collapse score
below DEFAULT_COLLAPSE_THRESHOLD.
"""

from __future__ import annotations

from typing import Dict

import pytest
import torch

from benchmarks.cifar.data import default_data_dir
from benchmarks.studies.collapse_calibration import (
    markdown,
    real_images,
    simsiam_heads,
    synthetic,
    untrained_features,
)
from lightly_er.functional import collapse_score
from lightly_er.monitoring import EntropyMeter
from lightly_er.monitoring.callback import DEFAULT_COLLAPSE_THRESHOLD

DATASETS = ["digits"] + (
    ["fashion-mnist"]
    if (default_data_dir("fashion-mnist") / "t10k-images-idx3-ubyte.gz").is_file()
    else []
)


def _score(x: torch.Tensor) -> float:
    metrics = EntropyMeter("sphere").update(x)
    assert metrics is not None
    return metrics["collapse_score"]


def test_synthetic_batches_are_ordered() -> None:
    scores: Dict[str, float] = {k: _score(v) for k, v in synthetic().items()}
    assert scores["isotropic Gaussian"] >= 0.9
    order = [
        "isotropic Gaussian",
        "random rank-16",
        "random rank-4",
        "two antipodal points",
        "one point",
    ]
    for higher, lower in zip(order, order[1:], strict=False):
        assert scores[higher] - scores[lower] >= 0.1, (higher, lower, scores)
    assert scores["one point + noise 1e-3"] < 0.01  # scale-aware
    # The meter reports exactly the functional's score.
    x = synthetic()["random rank-4"]
    assert _score(x) == pytest.approx(float(collapse_score(x)), abs=1e-6)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("backbone", ["small", "resnet18"])
def test_untrained_backbones_on_real_images_are_not_flagged(
    dataset: str, backbone: str
) -> None:
    images = real_images(dataset, size=32)
    for seed in (0, 1):
        features = untrained_features(images, backbone, seed)
        # Post-ReLU features in a narrow cone: the old normalized entropy read them
        # as collapsed (0.02-0.03); the collapse score does not.
        mean_cosine = (
            torch.nn.functional.normalize(features, dim=1).mean(0).norm() ** 2
        ).item()
        assert mean_cosine > 0.8
        assert _score(features) >= DEFAULT_COLLAPSE_THRESHOLD + 0.2


def test_simsiam_without_stop_gradient_is_flagged_and_with_it_is_not() -> None:
    torch.set_num_threads(1)
    z, p, loss, steps = simsiam_heads(stop_gradient=False, steps=3000)
    assert loss <= -0.99  # the collapse the SimSiam paper reports
    assert _score(p) < DEFAULT_COLLAPSE_THRESHOLD - 0.1  # prediction head
    assert _score(z) < DEFAULT_COLLAPSE_THRESHOLD  # projection head
    z_sg, p_sg, loss_sg, _ = simsiam_heads(stop_gradient=True, steps=steps)
    assert loss_sg > loss
    assert _score(z_sg) >= DEFAULT_COLLAPSE_THRESHOLD + 0.1
    assert _score(p_sg) >= DEFAULT_COLLAPSE_THRESHOLD


def test_markdown_table() -> None:
    table = markdown([("one point", 0.0, 1.0), ("isotropic", 0.98, 118.5)])
    lines = table.splitlines()
    assert lines[2] == "| one point | 0.000 | 1.0 | yes |"
    assert lines[3] == "| isotropic | 0.980 | 118.5 | no |"
