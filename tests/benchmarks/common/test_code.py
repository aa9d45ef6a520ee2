"""The code a run names (commit, dirty flag, changes, versions) and the resume rule,
on a throwaway git repository."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Dict, Optional

import pytest

from benchmarks.common.code import (
    CodeChanged,
    CodeVersion,
    check_resume,
    code_summary,
    current_code,
    read_started,
    write_started,
)
from benchmarks.common.records import RunResult
from tests.benchmarks.records import sweep_record


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit of one file, and an ignored folder."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.com")
    _git(root, "config", "user.name", "t")
    (root / "a.py").write_text("x = 1\n")
    (root / ".gitignore").write_text("ignored/\n")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "first")
    return root


def _code(repo: Path, **kw: object) -> CodeVersion:
    return current_code(root=repo, versions=False, **kw)  # type: ignore[arg-type]


def test_a_clean_checkout_names_its_commit(repo: Path) -> None:
    code = _code(repo)
    assert code.commit == _git(repo, "rev-parse", "HEAD")
    assert (code.dirty, code.diff) == (False, None)
    assert code.describe() == code.commit[:7]
    (repo / "ignored").mkdir()
    (repo / "ignored" / "x.bin").write_bytes(b"\0" * 10)  # git-ignored: still clean
    assert _code(repo) == code


def test_changes_make_it_dirty_and_the_hash_follows_their_content(repo: Path) -> None:
    (repo / "a.py").write_text("x = 2\n")
    first = _code(repo)
    assert first.dirty and first.diff is not None and len(first.diff) == 64
    assert first.describe() == f"{first.commit[:7]} (dirty, changes {first.diff[:8]})"
    assert _code(repo).diff == first.diff  # the same changes, the same hash
    (repo / "a.py").write_text("x = 3\n")
    assert _code(repo).diff != first.diff
    (repo / "a.py").write_text("x = 1\n")
    assert not _code(repo).dirty  # back to the commit
    (repo / "new.py").write_text("y = 1\n")  # an untracked file counts, by content
    untracked = _code(repo)
    assert untracked.dirty
    (repo / "new.py").write_text("y = 2\n")
    assert _code(repo).diff != untracked.diff


def test_the_runs_own_log_directory_does_not_make_it_dirty(repo: Path) -> None:
    logs = repo / "runs" / "sweep"
    logs.mkdir(parents=True)
    (logs / "record.json").write_text("{}")
    assert _code(repo, ignore=[logs]).dirty is False
    assert _code(repo).dirty is True  # without the exception it would
    (repo / "a.py").write_text("x = 2\n")
    both = _code(repo, ignore=[logs])
    (logs / "record.json").write_text('{"more": 1}')
    assert _code(repo, ignore=[logs]) == both  # the log's changes do not enter


def test_outside_a_checkout_there_is_no_commit(tmp_path: Path) -> None:
    code = current_code(root=tmp_path, versions=False)
    assert (code.commit, code.dirty, code.diff) == (None, False, None)
    assert code.describe() == "no git commit"


def test_versions_name_python_torch_lightly_and_lightly_er() -> None:
    import lightly
    import torch

    import lightly_er

    versions = current_code().versions
    assert set(versions) == {"python", "torch", "lightly", "lightly_er"}
    assert versions["torch"] == torch.__version__
    assert versions["lightly"] == lightly.__version__
    assert versions["lightly_er"] == lightly_er.__version__


A = CodeVersion("a" * 40)
B = CodeVersion("b" * 40)
A_DIRTY = CodeVersion("a" * 40, True, "1" * 64)
A_OTHER_CHANGES = CodeVersion("a" * 40, True, "2" * 64)


def test_resume_with_the_same_code() -> None:
    same = CodeVersion("a" * 40, versions={"torch": "other"})  # versions aside
    assert check_resume({"r1": A, "r2": same}, A) == []
    assert check_resume({"r": A_DIRTY}, A_DIRTY) == []
    assert check_resume({}, B) == []


@pytest.mark.parametrize(
    "found, current, words",
    [
        ({"r": A}, B, ["commit aaaaaaa", "this checkout is commit bbbbbbb"]),
        ({"r": A_DIRTY}, A_OTHER_CHANGES, ["changes 11111111", "changes 22222222"]),
        ({"r": A}, A_DIRTY, ["with commit aaaaaaa (e.g. r)", "(dirty"]),
        ({"r": None}, A, ["no commit recorded", "aaaaaaa"]),
    ],
)
def test_resume_across_a_change_is_refused_naming_both(
    found: Dict[str, Optional[CodeVersion]], current: CodeVersion, words: list[str]
) -> None:
    with pytest.raises(CodeChanged) as error:
        check_resume(found, current, where="runs/x")
    message = str(error.value)
    assert message.startswith("cannot resume in runs/x: 1 run(s)")
    assert "--allow-code-change" in message
    for word in words:
        assert word in message
    assert check_resume(found, current, allow_code_change=True) == ["r"]


def test_the_refusal_groups_the_runs_by_commit() -> None:
    found = {"x1": A, "x2": A, "y": B, "z": None}
    with pytest.raises(
        CodeChanged, match=r"2 run\(s\) with commit aaaaaaa \(e.g. x1\)"
    ):
        check_resume(found, CodeVersion("c" * 40))
    assert check_resume(found, A, allow_code_change=True) == ["y", "z"]


def test_summary_counts_runs_per_code() -> None:
    assert code_summary([A, A, B]) == "aaaaaaa (2 runs), bbbbbbb (1 run)"
    assert code_summary([None]) == "no commit recorded (1 run)"


def test_started_code_is_kept_on_resume_and_replaced_on_a_fresh_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run" / "code.json"
    assert read_started(path) is None
    write_started(path, A_DIRTY)
    assert read_started(path) == A_DIRTY
    write_started(path, B, fresh=False)  # resumed: the code it started with stays
    assert read_started(path) == A_DIRTY
    write_started(path, B)
    assert read_started(path) == B
    path.write_text("[]")
    assert read_started(path) is None  # not a code description: unnamed


def test_a_sweep_refuses_records_of_other_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CIFAR-10 sweep applies the rule to its finished records and to the runs
    it would resume from a checkpoint, before anything is trained."""
    from benchmarks.cifar import sweep
    from benchmarks.cifar.config import SweepConfig, expand_runs

    config = SweepConfig(methods=["byol"], epochs=2, log_dir=tmp_path, emas=[0.99])
    (spec,) = expand_runs(config)
    record = sweep_record("byol", 128, 0, 0.7)
    assert record.run_id == spec.run_id == "byol-bs128-ema0.99-ep2-seed0"
    record.code = A
    record.save(tmp_path / "runs" / f"{spec.run_id}.json")
    monkeypatch.setattr(sweep, "current_code", lambda **kw: B)
    with pytest.raises(CodeChanged, match="commit aaaaaaa.*commit bbbbbbb"):
        sweep.check_code([spec], config)
    sweep.check_code([spec], replace(config, allow_code_change=True))
    monkeypatch.setattr(sweep, "current_code", lambda **kw: A)
    sweep.check_code([spec], config)  # the same code: kept


def test_a_sweep_refuses_to_resume_a_checkpoint_of_other_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.cifar import sweep
    from benchmarks.cifar.config import SweepConfig, expand_runs
    from benchmarks.cifar.run import run_dir_of

    config = SweepConfig(methods=["simclr"], epochs=2, log_dir=tmp_path)
    (spec,) = expand_runs(config)
    run_dir = run_dir_of(spec, config)
    write_started(run_dir / "code.json", A_DIRTY)
    monkeypatch.setattr(sweep, "current_code", lambda **kw: A)
    sweep.check_code([spec], config)  # started, no checkpoint: it starts afresh
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(CodeChanged, match="simclr-bs128-ep2-seed0"):
        sweep.check_code([spec], config)


def test_records_keep_their_code_through_a_round_trip(tmp_path: Path) -> None:
    record = sweep_record("byol_er", 32, 1, 0.8)
    record.code = A_DIRTY
    record.save(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["code"]["dirty"] is True
    assert RunResult.load(tmp_path / "r.json").code == A_DIRTY
