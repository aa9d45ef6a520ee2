"""The README's code blocks run as written and its printed figures are current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


DOCS = sorted((README.parent / "docs").glob("*.md"))


def _doc_blocks() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for i, code in enumerate(
            re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
        ):
            found.append((f"{path.name} python block {i}", code))
    return found


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_block_runs(index: int) -> None:
    code = _blocks("python")[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {})


@pytest.mark.parametrize("name, code", _doc_blocks())
def test_docs_python_blocks_run(name: str, code: str) -> None:
    exec(compile(code, name, "exec"), {})


def test_no_placeholder_is_left() -> None:
    for path in (README, README.parent / "benchmarks" / "README.md", *DOCS):
        text = path.read_text(encoding="utf-8")
        for marker in (
            "TBD",
            "SMOKE_TIMING",
            "STUDY_SUMMARY",
            "MONITOR_PLOT",
            "KAPPA_SENSITIVITY",
        ):
            assert marker not in text, (path.name, marker)


def test_quickstart_has_exactly_two_commands() -> None:
    quickstart = _blocks("bash")[0].strip().splitlines()
    assert quickstart == [
        'pip install ".[benchmarks]" && python benchmarks/cifar10.py --preset smoke',
        'pip install ".[dev]" && python -m pytest',
    ]


def test_demo_output_matches_readme() -> None:
    shown = _blocks("text")[0].strip()
    result = subprocess.run(
        [sys.executable, "-m", "lightly_er"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == shown
