"""View streams: lightly's transform bit for bit; order, prefix and batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.cifar.data import train_transform
from benchmarks.studies.mechanism import data
from benchmarks.studies.mechanism.config import METHODS


def _images(n: int = 24) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("method", METHODS)
def test_stream_is_lightlys_transform_of_the_rgb_image_bit_for_bit(
    tmp_path: Path, method: str
) -> None:
    images = _images()
    samples, batch, seed = 16, 8, 5
    path = tmp_path / "s.npy"
    data.generate_stream(path, method, seed, images, samples, batch)
    stream = data.open_stream(path, samples)
    _, normalize = data.grey_pipelines(method)
    got = data.batch_views(stream, 0, samples, normalize)

    # lightly's transform on the RGB image (gray channel repeated), same order and
    # the same random states, as a lightly DataLoader would apply it.
    transform = train_transform(method, 28)
    order = data.shuffle_order(seed, len(images), samples, batch)
    data.seed_everything(seed)
    expected = [
        transform(Image.fromarray(np.repeat(images[i][..., None], 3, -1)))
        for i in order
    ]
    for v in range(2):
        want = torch.stack([views[v] for views in expected])
        assert torch.equal(got[v], want), f"{method} view {v}"
        assert got[v].is_contiguous(memory_format=torch.channels_last)


def test_stream_is_a_prefix_of_a_longer_one(tmp_path: Path) -> None:
    images = _images()
    data.generate_stream(tmp_path / "a.npy", "byol", 1, images, 8, 4)
    data.generate_stream(tmp_path / "b.npy", "byol", 1, images, 20, 4)
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    np.testing.assert_array_equal(a, b[:8])
    # another seed: another stream
    data.generate_stream(tmp_path / "c.npy", "byol", 2, images, 8, 4)
    assert not np.array_equal(a, np.load(tmp_path / "c.npy"))


def test_shuffle_order_is_a_fresh_permutation_per_pass_cut_to_the_batch() -> None:
    order = data.shuffle_order(0, 10, 25, 4)  # passes of 8 (drop_last)
    assert len(order) == 25
    for p in range(3):
        chunk = order[8 * p : 8 * (p + 1)]
        assert len(set(chunk.tolist())) == len(chunk)
    generator = torch.Generator().manual_seed(0)
    first = torch.randperm(10, generator=generator)[:8].numpy()
    np.testing.assert_array_equal(order[:8], first)


def test_batch_views_read_the_samples_of_their_step() -> None:
    stream = np.arange(6 * 2 * 28 * 28, dtype=np.int64).reshape(6, 2, 28, 28) % 251
    stream = stream.astype(np.uint8)
    identity = lambda x: x  # noqa: E731
    views = data.batch_views(stream, 1, 2, identity)
    expected = torch.from_numpy(stream[2:4, 0]).float() / 255
    torch.testing.assert_close(views[0][:, 1], expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(
        views[1][:, 2],
        torch.from_numpy(stream[2:4, 1]).float() / 255,
        rtol=0,
        atol=1e-7,
    )
    assert views[0].shape == (2, 3, 28, 28)


def test_open_stream_rejects_a_short_stream(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.zeros((4, 2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="need 5 samples"):
        data.open_stream(tmp_path / "s.npy", 5)
    assert not data.stream_ready(tmp_path / "s.npy", 5)
    assert data.stream_ready(tmp_path / "s.npy", 4)


def test_bank_is_the_registered_draw() -> None:
    generator = torch.Generator().manual_seed(0)
    expected = torch.randperm(60_000, generator=generator)[:10_000].numpy()
    np.testing.assert_array_equal(data.bank_indices(60_000, 10_000, 0), expected)
