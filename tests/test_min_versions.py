"""pyproject.toml's dependency floors and .ci/min-versions.txt say the same thing.

.ci/min_versions installs the pinned versions and runs the tests on them, so a floor
in pyproject.toml that differs from its pin would be a floor nobody tested.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
PINS_FILE = ROOT / ".ci" / "min-versions.txt"
NOT_PINNED = {"torch", "torchvision"}  # pinned in .ci/min_versions (TORCH_FLOOR)
MIN_VERSIONS_SCRIPT = ROOT / ".ci" / "min_versions"
# Optional dependencies (the `benchmarks` extra) that the min-versions tests use too.
PINNED_EXTRAS = {"scikit-learn", "matplotlib", "pillow"}


def _name(raw: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", raw).lower()


def _release(version: str) -> tuple[int, ...]:
    """'2.4' and '2.4.0' alike: the release numbers, trailing zeros dropped."""
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _dependencies(extra: str | None = None) -> dict[str, list[str]]:
    """[project] dependencies (or those of an extra): name -> version specifiers."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    requirements = (
        project["dependencies"]
        if extra is None
        else project["optional-dependencies"][extra]
    )
    deps: dict[str, list[str]] = {}
    for requirement in requirements:
        text = requirement.split(";", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)\s*(?:\[[^\]]*\])?\s*(.*)", text)
        assert match, f"cannot parse dependency {requirement!r}"
        name, specifiers = match.groups()
        deps[_name(name)] = [s.strip() for s in specifiers.split(",") if s.strip()]
    return deps


def _pins() -> dict[str, str]:
    """.ci/min-versions.txt: name -> pinned version."""
    pins: dict[str, str] = {}
    for line in PINS_FILE.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([0-9][0-9.]*)", line)
        assert match, f"{PINS_FILE.name}: not a plain NAME==VERSION pin: {line!r}"
        name = _name(match.group(1))
        assert name not in pins, f"{PINS_FILE.name}: {name} pinned twice"
        pins[name] = match.group(2)
    return pins


def test_pins_are_exactly_the_runtime_dependencies() -> None:
    assert set(_pins()) == (set(_dependencies()) - NOT_PINNED) | PINNED_EXTRAS


def test_pinned_extras_are_optional_with_their_floor() -> None:
    extras = _dependencies("benchmarks")
    assert PINNED_EXTRAS <= set(extras)
    assert not PINNED_EXTRAS & set(_dependencies())
    for name in sorted(PINNED_EXTRAS):
        floors = [s[2:].strip() for s in extras[name] if s.startswith(">=")]
        assert floors and _release(floors[0]) == _release(_pins()[name]), name


def test_every_dependency_has_a_floor() -> None:
    for name, specifiers in _dependencies().items():
        floors = [s for s in specifiers if s.startswith(">=")]
        assert len(floors) == 1, f"{name}: want one >= floor, got {specifiers}"


def test_floors_equal_the_pins() -> None:
    deps, pins = _dependencies(), _pins()
    for name in sorted(set(deps) & set(pins)):
        floors = [s[2:].strip() for s in deps[name] if s.startswith(">=")]
        assert floors, f"{name}: no >= floor in pyproject.toml"
        assert _release(floors[0]) == _release(pins[name]), (
            f"{name}: pyproject.toml says >={floors[0]}, "
            f"{PINS_FILE.name} pins {pins[name]}"
        )


def _script_floors() -> dict[str, str]:
    """.ci/min_versions: torch and torchvision -> the version it installs."""
    script = MIN_VERSIONS_SCRIPT.read_text(encoding="utf-8")
    floors = {}
    for name in ("torch", "torchvision"):
        variable = f"{name.upper()}_FLOOR"
        match = re.search(rf"^{variable}=([0-9][0-9.]*)$", script, flags=re.M)
        assert match, f".ci/min_versions: no {variable}=VERSION line"
        floors[name] = match.group(1)
    return floors


def test_torch_is_not_declared_below_the_tested_floor() -> None:
    # pyproject.toml may declare a floor at or above the one .ci/min_versions tests,
    # never below it (a floor nobody tested).
    deps = _dependencies()
    for name, tested in _script_floors().items():
        floors = [s[2:].strip() for s in deps[name] if s.startswith(">=")]
        assert floors and _release(floors[0]) >= _release(tested), (
            f"{name}: pyproject.toml says >={floors[0]}, .ci/min_versions tests {tested}"
        )
