"""The benchmarks' entry points answer --help and a bad argument before torch loads.

Checked through ``sys.modules`` in a fresh interpreter, not by timing: what --help
must not import is torch, lightly, Lightning and what they pull in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = [
    "benchmarks/cifar10.py",
    "benchmarks/imagenet/resnet50/main.py",
    "benchmarks/imagenet/vitb16/main.py",
]
HEAVY = (
    "torch",
    "torchvision",
    "lightly",
    "lightly_er",
    "pytorch_lightning",
    "lightning_fabric",
    "timm",
    "numpy",
    "sklearn",
    "matplotlib",
)

_PROBE = """
import json, runpy, sys
sys.argv = [{script!r}, *{argv!r}]
code = 0
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as exit:
    code = exit.code
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"code": code, "loaded": loaded}}))
"""


def _probe(script: str, argv: List[str]) -> dict[str, object]:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE.format(script=str(ROOT / script), argv=argv, heavy=HEAVY),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    report: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    report["stdout"] = completed.stdout
    report["stderr"] = completed.stderr
    return report


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_help_imports_no_heavy_package(script: str) -> None:
    report = _probe(script, ["--help"])
    assert report["code"] == 0
    assert "--log-dir" in str(report["stdout"])
    assert report["loaded"] == [], report["loaded"]


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_a_malformed_argument_imports_no_heavy_package(script: str) -> None:
    report = _probe(script, ["--epochs", "many"])
    assert report["code"] == 2
    assert "--epochs" in str(report["stderr"])
    assert report["loaded"] == [], report["loaded"]
