"""The series sends the authors' estimator only: no research estimator goes upstream.

The sent losses use the plug-in vMF kernel estimate with the self-term kept. The
other sphere entropy estimators (joe, Renyi-2, nearest neighbors, log-determinant)
and leave-one-out are research options of lightly_er.experimental: no file, no
pull request description and no example note of the series defines or mentions
them. The check reads the manifest's sources (no generator run, no git); the
patch-level twin in test_make_patch.py reads what the generator writes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

import pytest

from upstream import manifest

ROOT = Path(__file__).resolve().parents[2]
KEYS = [pr.key for pr in manifest.PULL_REQUESTS]

RESEARCH = re.compile(r"joe|renyi|knn|logdet|leave[-_ ]one[-_ ]out", re.IGNORECASE)
"""The research estimators' names (and their option), as words or in identifiers."""


def research_mentions(text: str) -> List[str]:
    """The lines of text that name a research estimator."""
    return [line.strip() for line in text.splitlines() if RESEARCH.search(line)]


def test_the_pattern_finds_every_research_estimator() -> None:
    # The names as the research code writes them, and text without them.
    for name in ('"joe"', "renyi2", "knn_sphere_entropy", "LOGDET_EPS", "Knn"):
        assert research_mentions(f"x = {name}\n") == [f"x = {name}"]
    assert research_mentions("leave_one_out: bool\nleave-one-out\n") == [
        "leave_one_out: bool",
        "leave-one-out",
    ]
    assert research_mentions("the plug-in estimate, the self-term kept\n") == []


@pytest.mark.parametrize("pr", manifest.PULL_REQUESTS, ids=KEYS)
def test_no_sent_file_names_a_research_estimator(pr: manifest.PullRequest) -> None:
    for source, _ in pr.files:
        assert research_mentions((ROOT / source).read_text()) == [], source
    assert research_mentions(pr.description) == [], pr.key
    for example in pr.examples:
        assert research_mentions(example.note + example.arguments) == [], pr.key


def test_the_research_modules_stay_home() -> None:
    # They exist (the lightly-er API keeps every estimator) and are not sent.
    sources = {source for pr in manifest.PULL_REQUESTS for source, _ in pr.files}
    for module in ("_sphere", "_kernel_estimators", "_samples"):
        path = f"lightly_er/functional/{module}.py"
        assert (ROOT / path).is_file() and path not in sources
        assert research_mentions((ROOT / path).read_text())
    assert "lightly_er/utils/checks.py" not in sources  # SPHERE_ESTIMATORS
