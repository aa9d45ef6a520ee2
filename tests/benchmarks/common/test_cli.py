"""The benchmarks' one-line-error parser, the run wrapper and the shared checks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import pytest

from benchmarks.common.cli import (
    OneLineErrorParser,
    UsageError,
    check_log_dir,
    run_command,
    say,
)


@pytest.mark.parametrize(
    ("kwargs", "line"),
    [
        (
            {"prog": "x.py", "hint": " (see --help)"},
            "x.py: error: argument --n: invalid int value: 'a' (see --help)",
        ),
        ({"error_prefix": "error: "}, "error: argument --n: invalid int value: 'a'"),
    ],
)
def test_parser_errors_are_one_line_with_status_2(
    kwargs: dict, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = OneLineErrorParser(**kwargs)
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--n", "a"])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == line + "\n"


def test_run_command_turns_user_errors_into_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def missing() -> NoReturn:
        raise UsageError("no dataset\n  here")

    assert run_command("p.py", missing) == 2
    assert capsys.readouterr().err == "p.py: error: no dataset here\n"

    def crash() -> NoReturn:
        raise FileNotFoundError("a file vanished during a run")

    # Anything else raised in a run is a crash: its traceback and exit 1.
    assert run_command("p.py", crash) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "FileNotFoundError: a file vanished" in err

    def interrupted() -> NoReturn:
        raise KeyboardInterrupt

    assert run_command("p.py", interrupted) == 130
    assert "finished runs are kept" in capsys.readouterr().err
    assert run_command("p.py", lambda: None) == 0


def test_check_log_dir_creates_nothing(tmp_path: Path) -> None:
    check_log_dir(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        check_log_dir(tmp_path / "file")


def test_say_writes_a_line_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # Parallel runs share stdout: a line written in two calls (print's text, then its
    # newline, as under PYTHONUNBUFFERED) can be cut by another process's line.
    writes: list[str] = []

    class Recorder:
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

        def flush(self) -> None:
            writes.append("<flush>")

    monkeypatch.setattr(sys, "stdout", Recorder())
    say("[1/12] simclr  started")
    assert writes == ["[1/12] simclr  started\n", "<flush>"]
