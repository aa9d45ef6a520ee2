"""Data of the study: Fashion-MNIST, view streams, evaluation tensors.

A *view stream* holds the training batches of one (method, seed) in order, as uint8
gray views: lightly's transform objects of the method
(:func:`benchmarks.cifar.data.train_transform`) applied to the gray ("L") PIL image,
without their final ToTensor and Normalize, which :func:`views_to_tensors` applies to
a whole batch with the same torchvision functions. Lightly's views of a gray image
are gray and on the 1/255 grid, so this is lightly's transform of the RGB image bit
for bit (``tests/benchmarks/studies/test_mechanism_data.py``), computed once for
every arm of the method and seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from benchmarks.cifar.data import eval_transform, load_fashion_mnist, train_transform
from lightly_er.utils.io import atomic_path

VIEWS = 2
"""Views per sample: every method of the study uses two (DINO without local crops)."""


@dataclass
class GreyData:
    """Fashion-MNIST as gray uint8 arrays (N, 28, 28) and int64 labels."""

    train: np.ndarray
    train_labels: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray


def load_grey(
    data_dir: Optional[Path],
    train_size: Optional[int] = None,
    test_size: Optional[int] = None,
) -> GreyData:
    """Fashion-MNIST through the benchmark's loader, as gray arrays.

    Raises:
        FileNotFoundError: If the IDX files are missing (the loader's message).
        ValueError: If the dataset does not have the sizes the preset requires.
    """
    arrays = load_fashion_mnist(data_dir)
    data = GreyData(
        np.ascontiguousarray(arrays.train_images[..., 0]),
        arrays.train_labels,
        np.ascontiguousarray(arrays.test_images[..., 0]),
        arrays.test_labels,
    )
    for got, want, what in (
        (len(data.train), train_size, "training"),
        (len(data.test), test_size, "test"),
    ):
        if want is not None and got != want:
            raise ValueError(
                f"the study needs Fashion-MNIST's {want} {what} images, found {got}"
            )
    return data


# ---------------------------------------------------------------------------------------
# View streams
# ---------------------------------------------------------------------------------------
def _compose_steps(transform: Any) -> List[Any]:
    steps = getattr(transform, "transforms", None)
    if steps is None:  # a lightly view transform: its Compose is .transform
        steps = transform.transform.transforms
    flat: List[Any] = []
    for step in steps:
        if type(step).__name__.endswith("ViewTransform"):  # SwaV: crop, then view
            flat += _compose_steps(step)
        else:
            flat.append(step)
    return flat


def grey_pipelines(method: str, image_size: int = 28) -> Tuple[List[List[Any]], Any]:
    """Per view, lightly's transform steps before ToTensor and Normalize.

    Returns:
        (pipelines, normalize): one list of PIL-stage steps per view, and the
        Normalize step (the same for every view).

    Raises:
        ValueError: If a view does not end with ToTensor, Normalize (the layout
            :func:`views_to_tensors` reproduces).
    """
    transform: Any = train_transform(method, image_size)
    pipelines, normalize = [], None
    for view in transform.transforms:
        steps = _compose_steps(view)
        names = [type(s).__name__ for s in steps[-2:]]
        if names != ["ToTensor", "Normalize"]:
            raise ValueError(
                f"{method}: a view ends with {names}, not ToTensor, Normalize"
            )
        pipelines.append(steps[:-2])
        normalize = steps[-1]
    if len(pipelines) != VIEWS:
        raise ValueError(f"{method}: {len(pipelines)} views, the study uses {VIEWS}")
    return pipelines, normalize


def shuffle_order(seed: int, n_train: int, samples: int, batch: int) -> np.ndarray:
    """The training images of samples 0, 1, ...: a fresh shuffle per pass.

    ``torch.Generator().manual_seed(seed)``, one ``randperm`` per pass, each pass
    cut to a multiple of ``batch`` (lightly's ``drop_last``).
    """
    generator = torch.Generator().manual_seed(seed)
    per_pass = n_train // batch * batch
    if per_pass == 0:
        raise ValueError(f"batch {batch} exceeds the {n_train} training images")
    order: List[np.ndarray] = []
    total = 0
    while total < samples:
        order.append(torch.randperm(n_train, generator=generator)[:per_pass].numpy())
        total += per_pass
    return np.concatenate(order)[:samples]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def generate_stream(
    path: Path,
    method: str,
    seed: int,
    images: np.ndarray,
    samples: int,
    batch: int,
    check: Optional[Callable[[], None]] = None,
) -> None:
    """Writes the view stream of (method, seed), uint8 (samples, 2, H, W), atomically.

    Python's, NumPy's and torch's random generators are seeded with ``seed``
    first; the samples are transformed in order, so a stream is a prefix of a
    longer one of the same (method, seed).
    """
    pipelines, _ = grey_pipelines(method, images.shape[1])
    order = shuffle_order(seed, len(images), samples, batch)
    seed_everything(seed)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(samples, VIEWS, *images.shape[1:])
        )
        for i, index in enumerate(order):
            if check is not None and i % 1024 == 0:
                check()  # e.g. stop when the study's main process is gone
            image = Image.fromarray(images[index])
            for v, steps in enumerate(pipelines):
                view = image
                for step in steps:
                    view = step(view)
                out[i, v] = np.asarray(view)
        out.flush()
        del out


def open_stream(path: Path, samples: int) -> np.ndarray:
    """The stream memory-mapped read-only; it must hold at least ``samples``."""
    stream: np.ndarray = np.load(path, mmap_mode="r")
    if stream.ndim != 4 or stream.shape[1] != VIEWS or len(stream) < samples:
        raise ValueError(f"{path} holds {stream.shape}, need {samples} samples")
    return stream


def stream_ready(path: Path, samples: int) -> bool:
    try:
        open_stream(path, samples)
    except (OSError, ValueError):
        return False
    return True


def views_to_tensors(
    views: np.ndarray, normalize: Callable[[Tensor], Tensor]
) -> List[Tensor]:
    """A batch of gray uint8 views (B, 2, H, W) as lightly's normalized RGB tensors.

    Each view: the gray channel repeated three times, then lightly's ToTensor
    (torchvision's ``to_dtype`` with scaling) and its Normalize, the calls lightly
    makes per image, here on the batch; channels-last memory format.
    """
    from torchvision.transforms.v2 import functional as F

    x = torch.from_numpy(np.array(views))  # a copy: the stream is read-only
    out = []
    for v in range(x.shape[1]):
        rgb = x[:, v : v + 1].expand(-1, 3, -1, -1)
        t = normalize(F.to_dtype(rgb, torch.float32, scale=True))
        out.append(t.contiguous(memory_format=torch.channels_last))
    return out


def batch_views(
    stream: np.ndarray, step: int, batch: int, normalize: Callable[[Tensor], Tensor]
) -> List[Tensor]:
    """The views of training step ``step`` (0-based) at ``batch``: samples
    ``step * batch`` to ``(step + 1) * batch`` of the stream."""
    return views_to_tensors(stream[step * batch : (step + 1) * batch], normalize)


# ---------------------------------------------------------------------------------------
# Evaluation tensors
# ---------------------------------------------------------------------------------------
@dataclass
class EvalData:
    """The evaluation images (evaluation view), as float tensors, channels-last.

    Attributes:
        bank, bank_labels: The kNN bank (and the probe's training set).
        test, test_labels: All test images (the kNN queries, the probe's test set).
        held_out, held_out_labels, held_out_index: The corpus's held-out batch,
            the last test images.
    """

    bank: Tensor
    bank_labels: Tensor
    test: Tensor
    test_labels: Tensor
    held_out: Tensor
    held_out_labels: Tensor
    held_out_index: np.ndarray


def bank_indices(n_train: int, size: int, seed: int) -> np.ndarray:
    """The bank: ``size`` training images drawn with ``Generator().manual_seed(seed)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_train, generator=generator)[: min(size, n_train)].numpy()


def _eval_tensor(images: np.ndarray) -> Tensor:
    transform = eval_transform(images.shape[1])  # the benchmark's kNN transform
    x = torch.stack(
        [transform(Image.fromarray(np.repeat(i[..., None], 3, -1))) for i in images]
    )
    return x.contiguous(memory_format=torch.channels_last)


def eval_data(
    data: GreyData, bank_size: int, bank_seed: int, held_out: int
) -> EvalData:
    """Builds :class:`EvalData` with the benchmark's evaluation transform."""
    bank = bank_indices(len(data.train), bank_size, bank_seed)
    test = _eval_tensor(data.test)
    first = len(data.test) - held_out
    if first < 0:
        raise ValueError(
            f"held_out {held_out} exceeds the {len(data.test)} test images"
        )
    return EvalData(
        bank=_eval_tensor(data.train[bank]),
        bank_labels=torch.from_numpy(data.train_labels[bank]),
        test=test,
        test_labels=torch.from_numpy(data.test_labels),
        held_out=test[first:].contiguous(memory_format=torch.channels_last),
        held_out_labels=torch.from_numpy(data.test_labels[first:]),
        held_out_index=np.arange(first, len(data.test), dtype=np.int64),
    )
