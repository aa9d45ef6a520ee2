"""The one Markdown/CSV table writer, and the differences table built on it."""

from __future__ import annotations

import csv
import doctest
import io
from types import ModuleType

import pytest

from benchmarks.common import differences, history, tables
from benchmarks.common.differences import Difference, differences_markdown
from benchmarks.common.tables import (
    csv_table,
    markdown_header,
    markdown_row,
    markdown_table,
)


@pytest.mark.parametrize("module", [tables, differences, history])
def test_examples_in_the_docstrings_hold(module: ModuleType) -> None:
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failed == 0


def test_markdown_table_aligns_each_column() -> None:
    text = markdown_table(["a", "b", "c", "d"], [[1, "x", 2.5, None]], "lrc")
    assert text == "| a | b | c | d |\n|---|---:|:---:|---|\n| 1 | x | 2.5 | None |\n"
    assert markdown_table(["a"], []) == "| a |\n|---|\n"


def test_streamed_table_is_the_same_table() -> None:
    rows = [["SimCLR", "1.0"], ["BYOL", "2.0"]]
    streamed = "\n".join(
        [markdown_header(["Case", "ms"], "lr"), *(markdown_row(r) for r in rows)]
    )
    assert streamed + "\n" == markdown_table(["Case", "ms"], rows, "lr")


@pytest.mark.parametrize("align", ["x", "lrl"])
def test_bad_alignment_is_refused(align: str) -> None:
    with pytest.raises(ValueError, match="align must be at most 2 of the letters"):
        markdown_header(["a", "b"], align)


def test_csv_table_quotes_what_needs_it() -> None:
    rows = [["a, b", 'say "x"', ""], [1, 2.5, None]]
    text = csv_table(["one", "two", "three"], rows)
    assert text.splitlines()[0] == "one,two,three"
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[1:] == [["a, b", 'say "x"', ""], ["1", "2.5", ""]]


def test_differences_markdown_has_one_row_per_difference() -> None:
    rows = [Difference("A (`--a`)", "1", "2", "why"), Difference("B", "-", "x", "y")]
    lines = differences_markdown(rows).splitlines()
    assert lines[0] == "| Setting | lightly's script | Ours | Why |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2:] == ["| A (`--a`) | 1 | 2 | why |", "| B | - | x | y |"]
