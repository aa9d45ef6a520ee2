"""``python -m lightly_er`` without its optional data package."""

from __future__ import annotations

import sys

import pytest

from lightly_er.__main__ import main


def test_without_scikit_learn_one_line_names_the_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # scikit-learn is optional (the benchmarks extra); None in sys.modules makes
    # its import fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: python -m lightly_er needs scikit-learn")
    assert "pip install scikit-learn" in err
