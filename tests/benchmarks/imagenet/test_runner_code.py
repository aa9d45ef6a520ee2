"""The ImageNet runner's record and its resume rule for --ckpt-path, on crafted
folders (nothing is trained)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks.common.code import CodeChanged, CodeVersion, write_started
from benchmarks.imagenet import _runner
from benchmarks.imagenet.resnet50 import main as resnet50

A = CodeVersion("a" * 40)
B = CodeVersion("b" * 40, True, "c" * 64)


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    return resnet50.build_parser().parse_args(["--log-dir", str(tmp_path), *extra])


def _checkpoint(tmp_path: Path, code: CodeVersion) -> Path:
    run = tmp_path / "byol" / "2026-12-07_10-00-00-000000"
    write_started(run / "code.json", code)
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    return ckpt


def test_a_checkpoint_of_other_code_is_refused_naming_both(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, A)
    args = _args(tmp_path, "--ckpt-path", str(ckpt))
    with pytest.raises(CodeChanged, match="commit aaaaaaa.*commit bbbbbbb"):
        _runner.check_checkpoint_code(args, B)
    _runner.check_checkpoint_code(args, A)  # the same code
    allowed = _args(tmp_path, "--ckpt-path", str(ckpt), "--allow-code-change")
    _runner.check_checkpoint_code(allowed, B)


def test_a_checkpoint_from_elsewhere_cannot_be_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tmp_path / "lightly.ckpt"
    ckpt.write_bytes(b"")
    _runner.check_checkpoint_code(_args(tmp_path, "--ckpt-path", str(ckpt)), B)
    assert "names no code" in capsys.readouterr().out


def test_the_record_names_settings_results_and_both_codes(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, A)
    args = _args(tmp_path, "--ckpt-path", str(ckpt), "--methods", "byol_er")
    run_dir = tmp_path / "byol_er" / "2026-12-07_11-00-00-000000"
    record = _runner.run_record(
        resnet50.benchmark(), args, "byol_er", run_dir, {"knn_eval/x": 0.5}, B
    )
    assert (record.run_id, record.engine) == (
        "byol_er/2026-12-07_11-00-00-000000",
        "imagenet/resnet50",
    )
    assert record.code == B
    assert record.data["results"] == {"knn_eval/x": 0.5}
    assert record.data["settings"]["log_dir"] == str(tmp_path)
    assert record.data["started_with_code"] == A.to_dict()
    record.save(run_dir / "record.json")
    assert _runner.RunRecord.load(run_dir / "record.json") == record
