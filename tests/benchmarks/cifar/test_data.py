"""Data loaders on generated files in each format, and the augmentations."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from benchmarks.cifar import data as datasets
from benchmarks.cifar.data import (
    CIFAR10_FILES,
    ImageArrayDataset,
    eval_transform,
    load_dataset,
    read_idx,
    train_transform,
)


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _fake_fashion(directory: Path, compress: bool, rng: np.random.Generator) -> dict:
    arrays = {
        "train_images": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 12, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 5, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for key, stem in datasets.FASHION_MNIST_FILES.items():
        _write_idx(directory / stem, arrays[key], compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "x-idx3-ubyte", array, compress)
    name = "x-idx3-ubyte.gz" if compress else "x-idx3-ubyte"
    np.testing.assert_array_equal(read_idx(tmp_path / name), array)


def test_read_idx_rejects_truncated_file(tmp_path: Path) -> None:
    _write_idx(tmp_path / "x", np.zeros((3, 4), dtype=np.uint8), compress=False)
    (tmp_path / "x").write_bytes((tmp_path / "x").read_bytes()[:-1])
    with pytest.raises(ValueError, match="header says shape"):
        read_idx(tmp_path / "x")


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_fashion_mnist_from_generated_idx_files(
    tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path / "absent"))
    where = tmp_path if layout == "flat" else tmp_path / "FashionMNIST" / "raw"
    arrays = _fake_fashion(
        where, compress=layout == "flat", rng=np.random.default_rng(0)
    )
    data = load_dataset("fashion-mnist", tmp_path)
    assert data.train_images.shape == (12, 28, 28, 3)
    np.testing.assert_array_equal(data.train_images[..., 1], arrays["train_images"])
    np.testing.assert_array_equal(data.test_labels, arrays["test_labels"])
    assert data.train_labels.dtype == np.int64


def test_fashion_mnist_missing_names_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_dataset("fashion-mnist", None)


def _fake_cifar(root: Path, rng: np.random.Generator) -> np.ndarray:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    first = None
    for name in CIFAR10_FILES:
        path = root / name
        if name.endswith("batches.meta"):
            meta = {"label_names": [f"c{i}" for i in range(10)]}
            path.write_bytes(pickle.dumps(meta))
            continue
        images = rng.integers(0, 256, (4, 3 * 32 * 32), dtype=np.uint8)
        labels = rng.integers(0, 10, 4).tolist()
        first = images if first is None else first
        path.write_bytes(pickle.dumps({"data": images, "labels": labels}))
    assert first is not None
    return first


def test_cifar10_from_generated_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torchvision checks the official archive's md5 sums, which generated files lack.
    monkeypatch.setattr(
        torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True
    )
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a: True)
    first = _fake_cifar(tmp_path, np.random.default_rng(0))
    data = load_dataset("cifar10", tmp_path)
    assert data.train_images.shape == (20, 32, 32, 3)
    assert data.test_images.shape == (4, 32, 32, 3)
    # CIFAR rows are channel-major: row 0, red plane first.
    np.testing.assert_array_equal(
        data.train_images[0, ..., 0].reshape(-1), first[0, : 32 * 32]
    )


def test_cifar10_missing_names_expected_files(tmp_path: Path) -> None:
    # No network here: the download fails, and the error names the files.
    with pytest.raises(FileNotFoundError, match="data_batch_1..5 and test_batch"):
        datasets.load_cifar10(tmp_path / "nothing", download=False)


def test_digits_split_is_stratified_and_fixed() -> None:
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.train_images.shape == (1437, 8, 8, 3)
    assert a.test_images.shape == (360, 8, 8, 3)
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    counts = np.bincount(a.test_labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    assert a.train_images.max() == 255 and a.train_images.min() == 0


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


def test_dataset_serves_triples_and_views() -> None:
    data = load_dataset("digits")
    views = ImageArrayDataset(
        data.train_images, data.train_labels, train_transform("swav_er", 16)
    )
    crops, target, index = views[3]
    assert len(crops) == 2 and crops[0].shape == (3, 16, 16)
    assert (target, index) == (int(data.train_labels[3]), 3)
    plain = ImageArrayDataset(data.test_images, data.test_labels, eval_transform(16))
    image, _, _ = plain[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32


def test_dataset_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError, match="images must be a uint8 array"):
        ImageArrayDataset(np.zeros((2, 8, 8), np.uint8), np.zeros(2))
    with pytest.raises(ValueError, match="same length"):
        ImageArrayDataset(np.zeros((2, 8, 8, 3), np.uint8), np.zeros(3))


def test_precomputed_dataset_serves_the_same_values() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(6)
    transform = eval_transform(16)
    plain = ImageArrayDataset(images, labels, transform)
    cached = ImageArrayDataset(images, labels, transform, precompute=True)
    assert cached.cache is not None and len(cached.cache) == 6
    for i in range(6):
        a, b = plain[i], cached[i]
        assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
