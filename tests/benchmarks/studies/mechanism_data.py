"""Generated Fashion-MNIST IDX files for the mechanism study's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.cifar import data as datasets


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(
    directory: Path, train: int = 256, test: int = 64, seed: int = 0
) -> Path:
    """Class-dependent blobs with noise, in Fashion-MNIST's file layout (28 px)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, n)
        images = []
        for label in labels:
            cx, cy = 6 + 1.5 * label, 8 + (label % 3) * 5
            blob = 180 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 18.0)
            images.append(np.clip(blob + rng.normal(0, 60, (28, 28)), 0, 255))
        return np.asarray(images).astype(np.uint8), labels.astype(np.uint8)

    directory.mkdir(parents=True, exist_ok=True)
    arrays = dict(zip(("train_images", "train_labels"), make(train), strict=True))
    arrays.update(zip(("test_images", "test_labels"), make(test), strict=True))
    for key, stem in datasets.FASHION_MNIST_FILES.items():
        write_idx(directory / stem, arrays[key])
    return directory
