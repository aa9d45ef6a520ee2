"""The one writer of the benchmarks' Markdown and CSV tables.

Every table a benchmark or study prints or writes goes through :func:`markdown_table`
(or, for a table printed row by row as its numbers come in, :func:`markdown_header`
and :func:`markdown_row`) and :func:`csv_table`, so the format is decided here once.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Sequence

ALIGNMENTS = {"l": "---", "r": "---:", "c": ":---:"}
"""Column alignment letters: left, right, center."""


def markdown_row(cells: Sequence[Any]) -> str:
    """One row, ``| a | b |``; each cell is written with ``str``.

    Examples:
        >>> markdown_row(["BYOL", 0.5])
        '| BYOL | 0.5 |'
    """
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def markdown_header(columns: Sequence[str], align: str = "") -> str:
    """The column names and the alignment line, without a final newline.

    Args:
        columns: The column names.
        align: One letter per column, ``l`` (``---``), ``r`` (``---:``) or ``c``
            (``:---:``); columns without a letter are left-aligned.

    Raises:
        ValueError: If ``align`` has a letter other than l, r, c, or more letters
            than there are columns.

    Examples:
        >>> print(markdown_header(["Model", "Top-1"], "lr"))
        | Model | Top-1 |
        |---|---:|
    """
    if len(align) > len(columns) or set(align) - set(ALIGNMENTS):
        raise ValueError(
            f"align must be at most {len(columns)} of the letters l, r, c; got {align!r}"
        )
    letters = align.ljust(len(columns), "l")
    rule = "|" + "|".join(ALIGNMENTS[letter] for letter in letters) + "|"
    return markdown_row(columns) + "\n" + rule


def markdown_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], align: str = ""
) -> str:
    """A Markdown table ending with a newline (see :func:`markdown_header`).

    Examples:
        >>> print(markdown_table(["Case", "Score"], [["one point", "0.000"]], "lr"))
        | Case | Score |
        |---|---:|
        | one point | 0.000 |
        <BLANKLINE>
    """
    lines = [markdown_header(columns, align)]
    lines += [markdown_row(row) for row in rows]
    return "\n".join(lines) + "\n"


def csv_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV table with a header line, ``\\n`` line ends.

    Examples:
        >>> print(csv_table(["model", "top1"], [["BYOL", "0.5"]]), end="")
        model,top1
        BYOL,0.5
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()
