"""Two augmented views of the held-out batch at a run's end, for LiDAR.

``backbone_views`` (2, N, d): the backbone's eval-mode features of the held-out
images under two of the method's training augmentations (the two views of its
lightly transform, as its view streams draw them), drawn after seeding Python's,
NumPy's and torch's generators with the run's seed and with their states restored
afterwards, so that the run's own random numbers are untouched. Written at the last
snapshot only (``benchmarks/studies/alarm_preregistration.md``), as a partial file
that :func:`benchmarks.studies.mechanism.corpus.merge_run` adds to the run's
corpus file.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from benchmarks.studies.mechanism import corpus
from benchmarks.studies.mechanism.config import RunSpec
from benchmarks.studies.mechanism.data import (
    EvalData,
    grey_pipelines,
    seed_everything,
    views_to_tensors,
)

KEY = "backbone_views"


def augmented_views(images: np.ndarray, method: str, seed: int) -> np.ndarray:
    """Gray uint8 views (N, 2, H, W) of ``images`` under the method's two training
    augmentations, seeded with ``seed``; the global random states are kept.

    Args:
        images: Gray uint8 images (N, H, W).
        method: The method whose augmentations are drawn.
        seed: The seed of the draw.

    Returns:
        The views, as a view stream holds them.
    """
    pipelines, _ = grey_pipelines(method, images.shape[1])
    saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        seed_everything(seed)
        out = np.empty((len(images), len(pipelines), *images.shape[1:]), np.uint8)
        for i, array in enumerate(images):
            image = Image.fromarray(array)
            for v, steps in enumerate(pipelines):
                view = image
                for step in steps:
                    view = step(view)
                out[i, v] = np.asarray(view)
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])
    return out


@torch.no_grad()
def backbone_views(
    test_images: np.ndarray, ev: EvalData, spec: RunSpec, model: Any, log_dir: Path
) -> Tensor:
    """Writes the run's ``backbone_views`` (the model is in eval mode) and returns it.

    Args:
        test_images: The gray test images (N_test, H, W).
        ev: The evaluation tensors (the held-out batch's indices).
        spec: The run (its method and seed).
        model: The method module, in eval mode.
        log_dir: The study's directory.

    Returns:
        The features (2, N, d).
    """
    grey = augmented_views(test_images[ev.held_out_index], spec.method, spec.seed)
    _, normalize = grey_pipelines(spec.method, test_images.shape[1])
    views = views_to_tensors(grey, normalize)
    out = torch.stack([model.features(v) for v in views])
    corpus.write_extra(log_dir, spec.run_id, KEY, out)
    return out
