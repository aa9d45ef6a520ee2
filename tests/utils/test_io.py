"""Tests of lightly_er.utils.io: writes are whole or absent, and leave no temp file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Union

import pytest

from lightly_er.utils.io import atomic_path, write_atomic

TEXT = "step,value\r\n0,1.5\nκ=10 ✓\n"
BYTES = b"\x89PNG\r\n\x1a\n\x00\xff" * 100


def _names(directory: Path) -> List[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("data", [TEXT, BYTES], ids=["text", "bytes"])
def test_write_atomic_writes_exactly(tmp_path: Path, data: Union[str, bytes]) -> None:
    path = tmp_path / "out.dat"
    write_atomic(path, data)
    expected = data if isinstance(data, bytes) else data.encode("utf-8")
    # Text is UTF-8 and its line endings are kept as given (no translation).
    assert path.read_bytes() == expected
    assert _names(tmp_path) == ["out.dat"]


@pytest.mark.parametrize("data", [TEXT, BYTES], ids=["text", "bytes"])
def test_write_atomic_replaces_an_existing_file(
    tmp_path: Path, data: Union[str, bytes]
) -> None:
    path = tmp_path / "out.dat"
    path.write_bytes(b"old content that is longer than nothing" * 50)
    write_atomic(str(path), data)  # a str path works too
    expected = data if isinstance(data, bytes) else data.encode("utf-8")
    assert path.read_bytes() == expected
    assert _names(tmp_path) == ["out.dat"]


def test_write_atomic_creates_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.csv"
    write_atomic(path, "x\n")
    assert path.read_text() == "x\n"


@pytest.mark.parametrize("data", [TEXT, BYTES], ids=["text", "bytes"])
@pytest.mark.parametrize("exists", [True, False], ids=["old-file", "no-file"])
@pytest.mark.parametrize("interrupt_at", ["fsync", "replace"])
def test_interrupted_write_atomic_leaves_the_old_file_and_no_temp(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data: Union[str, bytes],
    exists: bool,
    interrupt_at: str,
) -> None:
    path = tmp_path / "monitor.csv"
    if exists:
        path.write_text("complete\n")
    seen: List[Path] = []

    def interrupt(*args: object) -> None:
        # By now the new content is complete in the temporary file.
        (tmp,) = [p for p in tmp_path.iterdir() if p.name != "monitor.csv"]
        expected = data if isinstance(data, bytes) else data.encode("utf-8")
        assert tmp.read_bytes() == expected
        seen.append(tmp)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, interrupt_at, interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, data)
    monkeypatch.undo()
    assert len(seen) == 1 and not seen[0].exists()
    if exists:
        assert path.read_text() == "complete\n"
        assert _names(tmp_path) == ["monitor.csv"]
    else:
        assert _names(tmp_path) == []


def test_interrupted_block_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "values.csv"
    path.write_text("complete\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise KeyboardInterrupt
    assert path.read_text() == "complete\n"
    assert _names(tmp_path) == ["values.csv"]


def test_failing_block_that_removed_its_temp_file_is_still_clean(
    tmp_path: Path,
) -> None:
    path = tmp_path / "values.csv"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(path) as tmp:
            tmp.unlink()
            raise RuntimeError("boom")
    assert _names(tmp_path) == []


def test_atomic_path_gives_a_hidden_sibling(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "values.csv"
    with atomic_path(path) as tmp:
        # Same folder (os.replace is atomic within one file system), hidden name,
        # and the target does not exist until the block succeeds.
        assert tmp.parent == path.parent
        assert tmp.name.startswith(".values.csv.") and tmp.name.endswith(".tmp")
        assert tmp.exists() and not path.exists()
        tmp.write_text("done")
    assert path.read_text() == "done"
    assert _names(path.parent) == ["values.csv"]


def test_two_atomic_paths_do_not_collide(tmp_path: Path) -> None:
    path = tmp_path / "values.csv"
    with atomic_path(path) as first, atomic_path(path) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    # The outer block finishes last and wins.
    assert path.read_text() == "first"
    assert _names(tmp_path) == ["values.csv"]


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    # mkstemp makes private files; the result follows the umask like open() does.
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "table.csv", "a\n")
    finally:
        os.umask(old)
    assert (tmp_path / "table.csv").stat().st_mode & 0o777 == 0o644
