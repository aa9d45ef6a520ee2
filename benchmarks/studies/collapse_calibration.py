"""Calibration of the collapse score: the table in docs/reading_the_numbers.md.

Measures :func:`lightly_er.functional.collapse_score` and RankMe on batches of 256
whose state is known and prints a Markdown table with the verdict of the monitor's
default alarm threshold: synthetic batches (isotropic, random rank-16 and rank-4,
two antipodal points, one point, one point plus small noise), the post-ReLU backbone
features of untrained networks on real images, and a SimSiam trained with and
without stop-gradient until the run without it reaches a loss of -0.99 (the collapse
SimSiam's paper reports). The calibration tests use the same functions.

    python benchmarks/studies/collapse_calibration.py

About two minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import heads
from torch import Tensor, nn

from benchmarks.cifar.backbones import build_backbone
from benchmarks.cifar.data import eval_transform, load_dataset
from benchmarks.common.tables import markdown_table
from lightly_er.functional import collapse_score, effective_rank
from lightly_er.monitoring.callback import DEFAULT_COLLAPSE_THRESHOLD

Row = Tuple[str, float, float]
N, DIM = 256, 128


def synthetic(seed: int = 0) -> Dict[str, Tensor]:
    """The synthetic batches, (256, 128), of known state."""
    g = torch.Generator().manual_seed(seed)
    half = torch.ones(N // 2, DIM)
    return {
        "isotropic Gaussian": torch.randn(N, DIM, generator=g),
        "random rank-16": torch.randn(N, 16, generator=g)
        @ torch.randn(16, DIM, generator=g),
        "random rank-4": torch.randn(N, 4, generator=g)
        @ torch.randn(4, DIM, generator=g),
        "two antipodal points": torch.cat([half, -half]),
        "one point": torch.ones(N, DIM),
        "one point + noise 1e-3": torch.ones(N, DIM)
        + 1e-3 * torch.randn(N, DIM, generator=g),
    }


def real_images(dataset: str = "fashion-mnist", size: int = 32) -> Tensor:
    """256 test images of a dataset, evaluation transform at size pixels."""
    from PIL import Image

    data = load_dataset(dataset)
    images: np.ndarray = data.test_images[:N]
    transform = eval_transform(size)
    return torch.stack([transform(Image.fromarray(image)) for image in images])


@torch.no_grad()
def untrained_features(images: Tensor, backbone: str, seed: int) -> Tensor:
    """Backbone features of an untrained network in training mode (batch statistics)."""
    torch.manual_seed(seed)
    net, _ = build_backbone(backbone)
    features: Tensor = net(images).flatten(start_dim=1)
    return features


def simsiam_heads(
    stop_gradient: bool, steps: int = 2000
) -> Tuple[Tensor, Tensor, float, int]:
    """(projection, prediction, final loss, steps) of a SimSiam on digit vectors.

    An MLP backbone and lightly's SimSiam heads (BN on the projection output, a
    bottleneck predictor), SGD 0.06 with momentum 0.9 and weight decay 5e-4, views
    made by Gaussian pixel noise. Without stop-gradient it stops at a loss of -0.99.
    """
    from sklearn.datasets import load_digits

    x_all = torch.tensor(load_digits().data, dtype=torch.float32) / 16.0
    heldout, train = x_all[:N], x_all[N:]
    torch.manual_seed(0)
    backbone = nn.Sequential(
        nn.Linear(64, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.BatchNorm1d(128),
        nn.ReLU(),
    )
    projection = heads.ProjectionHead(
        [
            (128, 256, nn.BatchNorm1d(256), nn.ReLU()),
            (256, 256, nn.BatchNorm1d(256), None),
        ]
    )
    prediction = heads.SimSiamPredictionHead(256, 64, 256)
    model = nn.ModuleList([backbone, projection, prediction])
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4
    )
    criterion = NegativeCosineSimilarity()
    loss = torch.zeros(())
    done = 0
    for done in range(1, steps + 1):  # noqa: B007 (the count is returned)
        x = train[torch.randint(len(train), (64,))]
        z0 = projection(backbone(x + 0.3 * torch.randn_like(x)))
        z1 = projection(backbone(x + 0.3 * torch.randn_like(x)))
        p0, p1 = prediction(z0), prediction(z1)
        if stop_gradient:
            z0, z1 = z0.detach(), z1.detach()
        loss = 0.5 * (criterion(z0, p1) + criterion(z1, p0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if not stop_gradient and loss.item() <= -0.99:
            break
    with torch.no_grad():
        z = projection(backbone(heldout))
        p = prediction(z)
    return z, p, loss.item(), done


def _row(name: str, x: Tensor) -> Row:
    return name, float(collapse_score(x)), float(effective_rank(x))


def calibration(
    datasets: Sequence[str] = ("fashion-mnist", "digits"),
    log: Optional[Callable[[str], None]] = None,
) -> List[Row]:
    """Every row of the calibration table (case, collapse score, RankMe)."""
    rows = [_row(name, x) for name, x in synthetic().items()]
    for dataset in datasets:
        images = real_images(dataset)
        for backbone, label in (
            ("small", "small CNN"),
            ("resnet18", "CIFAR ResNet-18"),
        ):
            for seed in (0, 1):
                features = untrained_features(images, backbone, seed)
                rows.append(
                    _row(f"untrained {label}, {dataset}, seed {seed}", features)
                )
    # Without stop-gradient until the loss reaches -0.99; with it for as many steps.
    steps = 0
    for stop_gradient in (False, True):
        z, p, loss, steps = simsiam_heads(stop_gradient, steps=steps or 2000)
        what = "with" if stop_gradient else "without"
        if log is not None:
            log(f"SimSiam {what} stop-gradient: loss {loss:.4f} after {steps} steps")
        case = f"SimSiam {what} stop-gradient ({steps} steps, loss {loss:.3f})"
        rows.append(_row(f"{case}, projection", z))
        rows.append(_row(f"{case}, prediction", p))
    return rows


def markdown(rows: Sequence[Row]) -> str:
    threshold = DEFAULT_COLLAPSE_THRESHOLD
    columns = ("Batch (N = 256)", "Collapse score", "RankMe")
    return markdown_table(
        (*columns, f"Flagged (< {threshold:g})"),
        (
            (name, f"{score:.3f}", f"{rank:.1f}", "yes" if score < threshold else "no")
            for name, score, rank in rows
        ),
        "lrrc",
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Prints the calibration table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--datasets",
        nargs="*",
        default=["fashion-mnist", "digits"],
        help="real images for the untrained networks (default: fashion-mnist digits)",
    )
    args = parser.parse_args(argv)
    rows = calibration(args.datasets, log=print)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
