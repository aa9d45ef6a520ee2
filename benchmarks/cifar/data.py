"""Image datasets and augmentations for the benchmarks: CIFAR-10, Fashion-MNIST, digits.

Every dataset is loaded into memory as uint8 arrays of shape (N, H, W, 3) and served by
:class:`ImageArrayDataset` as ``(image, target, index)`` triples, the batch layout of
lightly's ``BenchmarkModule``. Sources:

- ``cifar10``: torchvision's CIFAR-10 in ``data_dir`` (downloaded there when missing
  and the machine has a network).
- ``fashion-mnist``: the four IDX files (gzip-compressed or not) in ``data_dir`` or in
  torchvision's layout ``data_dir/FashionMNIST/raw``; downloaded there by torchvision
  as a last resort when ``data_dir`` was given.
- ``digits``: scikit-learn's bundled 8x8 digits (1797 images), always offline; a fixed
  stratified 80/20 split.

Without ``data_dir`` a dataset is looked for in ``<root>/<name>``, where the root is
the environment variable ``LIGHTLY_ER_DATA_DIR`` or ``datasets`` (relative to the
working directory): ``LIGHTLY_ER_DATA_DIR=/usr/share/datasets`` finds the files of
Debian's ``dataset-fashion-mnist`` package, and CIFAR-10 goes to ``datasets/cifar10``
by default.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torchvision
from lightly.transforms.byol_transform import (
    BYOLTransform,
    BYOLView1Transform,
    BYOLView2Transform,
)
from lightly.transforms.dino_transform import DINOTransform
from lightly.transforms.simclr_transform import SimCLRTransform
from lightly.transforms.simsiam_transform import SimSiamTransform
from lightly.transforms.swav_transform import SwaVTransform
from lightly.transforms.utils import IMAGENET_NORMALIZE
from PIL import Image
from torch.utils.data import Dataset

from benchmarks.cifar.names import DATASETS as DATASETS

DATA_DIR_ENV = "LIGHTLY_ER_DATA_DIR"
"""The environment variable naming the folder that holds one folder per dataset."""
DEFAULT_DATA_ROOT = Path("datasets")
"""The root when the environment variable is not set (relative: the working folder)."""
CIFAR10_FILES: Tuple[str, ...] = tuple(
    f"cifar-10-batches-py/{name}"
    for name in (
        "batches.meta",
        *(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
    )
)
FASHION_MNIST_FILES: Dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass
class ImageArrays:
    """A labeled image dataset held in memory.

    Attributes:
        name: The dataset's name.
        train_images: uint8 array (N, H, W, 3).
        train_labels: int64 array (N,).
        test_images: uint8 array (M, H, W, 3).
        test_labels: int64 array (M,).
        num_classes: Number of classes.
        image_size: Side of the square crops the augmentations produce.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    image_size: int


class ImageArrayDataset(Dataset[Tuple[Any, int, int]]):
    """Serves (transform(image), target, index) from uint8 arrays (N, H, W, 3).

    Args:
        images: uint8 array (N, H, W, 3).
        labels: Integer array (N,).
        transform: Applied to the PIL image; None returns the PIL image.
        precompute: Apply a deterministic transform (the evaluation one) once, up
            front, instead of every epoch: the same values, less time.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        transform: Optional[Callable[[Image.Image], Any]] = None,
        precompute: bool = False,
    ) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be a uint8 array of shape (N, H, W, 3), got "
                f"{images.dtype} {images.shape}"
            )
        if len(images) != len(labels):
            raise ValueError(
                f"images and labels must have the same length, got {len(images)} "
                f"and {len(labels)}"
            )
        self.images = images
        self.labels = labels
        self.transform = transform
        self.cache: Optional[List[Any]] = None
        if precompute and transform is not None:
            self.cache = [transform(Image.fromarray(image)) for image in images]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tuple[Any, int, int]:
        if self.cache is not None:
            return self.cache[index], int(self.labels[index]), index
        image = Image.fromarray(self.images[index])
        out = self.transform(image) if self.transform is not None else image
        return out, int(self.labels[index]), index


def _to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (MNIST format), gzip-compressed or not, as a uint8 array.

    Raises:
        ValueError: If the file is not a uint8 IDX file or its size does not match its
            header.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not a uint8 IDX file")
    ndim = data[3]
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(
            f"{path}: header says shape {shape} but holds {len(data) - offset} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Optional[Path]:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def default_data_dir(name: str) -> Path:
    """Where a dataset is looked for without ``--data-dir``: ``<root>/<name>``.

    The root is ``$LIGHTLY_ER_DATA_DIR``, or ``datasets`` where it is not set.
    """
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_ROOT) / name


def _fashion_mnist_dirs(data_dir: Optional[Path]) -> List[Path]:
    folder = data_dir if data_dir is not None else default_data_dir("fashion-mnist")
    return [folder, folder / "FashionMNIST" / "raw"]


def load_fashion_mnist(data_dir: Optional[Path] = None) -> ImageArrays:
    """Fashion-MNIST from IDX files in data_dir (or the default folder).

    Raises:
        FileNotFoundError: If no folder holds the four IDX files and torchvision cannot
            download them; the message names the files and the folders searched.
    """
    for directory in _fashion_mnist_dirs(data_dir):
        paths = {k: _find_idx(directory, v) for k, v in FASHION_MNIST_FILES.items()}
        if all(p is not None for p in paths.values()):
            arrays = {k: read_idx(p) for k, p in paths.items() if p is not None}
            return ImageArrays(
                name="fashion-mnist",
                train_images=_to_rgb(arrays["train_images"]),
                train_labels=arrays["train_labels"].astype(np.int64),
                test_images=_to_rgb(arrays["test_images"]),
                test_labels=arrays["test_labels"].astype(np.int64),
                num_classes=10,
                image_size=28,
            )
    searched = ", ".join(str(d) for d in _fashion_mnist_dirs(data_dir))
    if data_dir is not None:
        try:
            torchvision.datasets.FashionMNIST(str(data_dir), download=True)
            return load_fashion_mnist(data_dir)
        except Exception as error:  # no network, or a broken download
            reason = f" (download failed: {error})"
    else:
        reason = " (give --data-dir to download there)"
    raise FileNotFoundError(
        "Fashion-MNIST not found: expected "
        + ", ".join(f"{v}[.gz]" for v in FASHION_MNIST_FILES.values())
        + f" in one of {searched}; put the files in --data-dir, or set "
        f"{DATA_DIR_ENV} to a folder whose fashion-mnist folder holds them "
        f"(/usr/share/datasets for Debian's dataset-fashion-mnist package){reason}"
    )


def load_cifar10(data_dir: Path, download: bool = True) -> ImageArrays:
    """CIFAR-10 through torchvision, downloaded to data_dir when it is missing.

    Raises:
        FileNotFoundError: If the files are missing and cannot be downloaded; the
            one-line message says where to put them.
    """
    present = all((data_dir / name).is_file() for name in CIFAR10_FILES)
    if not present and not download:
        raise FileNotFoundError(_cifar10_missing(data_dir, "download is off"))
    try:
        train = torchvision.datasets.CIFAR10(
            str(data_dir), train=True, download=not present
        )
        test = torchvision.datasets.CIFAR10(str(data_dir), train=False)
    except Exception as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise FileNotFoundError(
            _cifar10_missing(data_dir, f"the download failed: {reason}")
        ) from error
    return ImageArrays(
        name="cifar10",
        train_images=np.asarray(train.data, dtype=np.uint8),
        train_labels=np.asarray(train.targets, dtype=np.int64),
        test_images=np.asarray(test.data, dtype=np.uint8),
        test_labels=np.asarray(test.targets, dtype=np.int64),
        num_classes=10,
        image_size=32,
    )


def _cifar10_missing(data_dir: Path, reason: str) -> str:
    return (
        f"CIFAR-10 is not in {data_dir} and {reason}; put torchvision's "
        f"cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/"
        f"cifar-10-python.tar.gz) extracted there, so that "
        f"{data_dir / 'cifar-10-batches-py'} holds batches.meta, data_batch_1..5 "
        "and test_batch, or give --data-dir"
    )


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> ImageArrays:
    """scikit-learn's bundled 8x8 digits as uint8 RGB, split per class 80/20."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return ImageArrays(
        name="digits",
        train_images=_to_rgb(train_x),
        train_labels=train_y,
        test_images=_to_rgb(test_x),
        test_labels=test_y,
        num_classes=10,
        image_size=16,
    )


def load_dataset(name: str, data_dir: Optional[Path] = None) -> ImageArrays:
    """Loads one of DATASETS.

    Raises:
        ValueError: For an unknown name.
        FileNotFoundError: If the files are missing (see the loaders).
    """
    if name == "digits":
        return load_digits()
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir)
    if name == "cifar10":
        return load_cifar10(
            data_dir if data_dir is not None else default_data_dir(name)
        )
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def train_transform(method: str, image_size: int) -> Callable[[Image.Image], Any]:
    """lightly's CIFAR-10 benchmark augmentation of a method, at image_size pixels.

    As lightly's script: BYOL's asymmetric views (no blur); SimCLR's views with
    color jitter strength 0.5 for SimCLR and MoCo; SimSiam's views; two crops of
    min scale 0.14 for SwAV (jitter 0.5); two global crops and no local ones for
    DINO (jitter 0.5, its default solarisation). Gaussian blur is off throughout.
    The ER objective of a method uses the same augmentation.
    """
    base = method.removesuffix("_er")
    if base == "byol":
        return BYOLTransform(
            view_1_transform=BYOLView1Transform(
                input_size=image_size, gaussian_blur=0.0
            ),
            view_2_transform=BYOLView2Transform(
                input_size=image_size, gaussian_blur=0.0
            ),
        )
    if base in ("simclr", "moco"):
        return SimCLRTransform(
            input_size=image_size, cj_strength=0.5, gaussian_blur=0.0
        )
    if base == "simsiam":
        return SimSiamTransform(input_size=image_size, gaussian_blur=0.0)
    if base == "swav":
        return SwaVTransform(
            crop_sizes=[image_size],  # type: ignore[arg-type]
            crop_counts=[2],  # type: ignore[arg-type]
            crop_min_scales=[0.14],  # type: ignore[arg-type]
            # lightly's script leaves the default (1.0, 0.14), which lightly < 1.6
            # truncated to (1.0,) for one crop size and lightly >= 1.6 rejects.
            crop_max_scales=[1.0],  # type: ignore[arg-type]
            cj_strength=0.5,
            gaussian_blur=0,
        )
    if base == "dino":
        return DINOTransform(
            global_crop_size=image_size,
            n_local_views=0,
            cj_strength=0.5,
            gaussian_blur=(0, 0, 0),
        )
    raise ValueError(f"no augmentation is known for method {method!r}")


def eval_transform(image_size: int) -> Callable[[Image.Image], Any]:
    """Resize, to tensor and ImageNet normalization: the kNN train and test images."""
    transform: Callable[[Image.Image], Any] = torchvision.transforms.Compose(
        [
            torchvision.transforms.Resize(image_size),
            torchvision.transforms.ToTensor(),
            torchvision.transforms.Normalize(
                mean=IMAGENET_NORMALIZE["mean"], std=IMAGENET_NORMALIZE["std"]
            ),
        ]
    )
    return transform
