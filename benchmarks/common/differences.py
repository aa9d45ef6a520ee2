"""What a benchmark deliberately does differently from lightly's script, as a table.

Each benchmark keeps one tuple of :class:`Difference` (``benchmarks/cifar/differences.py``,
``benchmarks/imagenet/differences.py``); its README shows
:func:`differences_markdown` of it, and a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from benchmarks.common.tables import markdown_table

COLUMNS = ("Setting", "lightly's script", "Ours", "Why")


@dataclass(frozen=True)
class Difference:
    """One deliberate difference between a benchmark and lightly's script.

    Attributes:
        setting: The setting, with the flag that changes it.
        lightly: lightly's value.
        ours: The benchmark's value (its default first).
        why: The reason.
    """

    setting: str
    lightly: str
    ours: str
    why: str


def differences_markdown(differences: Sequence[Difference]) -> str:
    """The differences as the Markdown table of a benchmark's README.

    Examples:
        >>> print(differences_markdown([Difference("Seed", "once", "per method", "-")]))
        | Setting | lightly's script | Ours | Why |
        |---|---|---|---|
        | Seed | once | per method | - |
        <BLANKLINE>
    """
    return markdown_table(
        COLUMNS, [(d.setting, d.lightly, d.ours, d.why) for d in differences]
    )
