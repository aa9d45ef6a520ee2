"""Every torch API that lightly_er uses exists in the oldest torch it supports.

tests/data/torch_api_floor.txt lists the public names of torch's main namespaces in
that version (written by .ci/torch_api.py in an environment with it; .ci/min_versions
installs the same version and runs the tests there). The library's source is read
with ``ast``:

- every dotted name rooted at torch, through any import alias (``import torch.nn
  .functional as F``, ``from torch import nn``, ``from torch.linalg import vecdot``),
  must be in the list (``torch.compiler.is_compiling`` is not, before torch 2.3);
- every attribute the code reads on any other object that is a ``torch.Tensor``
  attribute in the installed torch must be one in the floor too (a Tensor method
  newer than the floor would fail there). ``NOT_TENSOR`` holds the names that the
  code reads on objects that are not tensors.

Names behind ``getattr``/``hasattr`` strings are not read: that is how
lightly_er.utils.compat reaches for a newer API where it exists. Signatures are not
checked (a keyword argument newer than the floor); the min-versions run covers those.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List, Optional, Tuple

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "lightly_er"
FLOOR_FILE = ROOT / "tests" / "data" / "torch_api_floor.txt"
MIN_VERSIONS_SCRIPT = ROOT / ".ci" / "min_versions"

NOT_TENSOR: Dict[str, str] = {}
"""Attribute names the library reads on objects that are not tensors, which are
Tensor attributes in the installed torch but not in the floor (name -> where)."""


@dataclass(frozen=True)
class FloorAPI:
    """The public names of torch's namespaces in one version."""

    version: str
    namespaces: FrozenSet[str]
    absent: FrozenSet[str]
    names: FrozenSet[str]

    def tensor_attributes(self) -> FrozenSet[str]:
        prefix = "torch.Tensor."
        return frozenset(n[len(prefix) :] for n in self.names if n.startswith(prefix))


def read_floor(text: str) -> FloorAPI:
    """Parses the file that .ci/torch_api.py writes."""
    version = re.search(r"^# torch (\S+):", text, flags=re.MULTILINE)
    assert version is not None, "no '# torch VERSION:' header"
    namespaces, absent, names = set(), set(), set()
    for line in text.splitlines():
        if line.startswith("# namespace: "):
            namespaces.add(line.removeprefix("# namespace: "))
        elif line.startswith("# absent: "):
            absent.add(line.removeprefix("# absent: "))
        elif line and not line.startswith("#"):
            names.add(line)
    return FloorAPI(
        version.group(1), frozenset(namespaces), frozenset(absent), frozenset(names)
    )


def _torch_aliases(tree: ast.AST) -> Dict[str, str]:
    """Local name -> the torch object it is bound to by the module's imports."""
    aliases: Dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "torch":
                    continue
                if alias.asname is not None:
                    aliases[alias.asname] = alias.name
                else:  # `import torch.nn` binds `torch`
                    aliases["torch"] = "torch"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "torch":
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted(node: ast.Attribute, aliases: Dict[str, str]) -> Optional[str]:
    """``torch.a.b`` for an attribute chain rooted at a torch alias, else None."""
    parts: List[str] = []
    current: ast.expr = node
    while isinstance(current, ast.Attribute):
        parts.append(current.attr)
        current = current.value
    if isinstance(current, ast.Name) and current.id in aliases:
        return ".".join([aliases[current.id], *reversed(parts)])
    return None


def used_names(source: str) -> Iterator[Tuple[int, str, bool]]:
    """(line, name, rooted at torch) for every torch name and attribute read."""
    tree = ast.parse(source)
    aliases = _torch_aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "torch":
                for alias in node.names:
                    yield node.lineno, f"{node.module}.{alias.name}", True
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "torch":
                    yield node.lineno, alias.name, True
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node, aliases)
            if dotted is not None:
                yield node.lineno, dotted, True
            else:
                yield node.lineno, node.attr, False


def _current(dotted: str) -> object:
    obj: object = torch
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part, None)
    return obj


def missing_in_floor(dotted: str, floor: FloorAPI) -> Optional[str]:
    """Why a dotted torch name is not in the floor's API, or None if it is."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        namespace = ".".join(parts[:cut])
        if namespace in floor.absent:
            return f"{namespace} does not exist in torch {floor.version}"
        if namespace not in floor.namespaces:
            continue
        name = f"{namespace}.{parts[cut]}"
        if name not in floor.names:
            return f"{name} does not exist in torch {floor.version}"
        if cut + 1 < len(parts) and inspect.ismodule(_current(name)):
            return (
                f"{name} is a namespace the floor list does not dump: add it to "
                ".ci/torch_api.py's NAMESPACES and regenerate the list"
            )
        return None
    return None


def floor_violations(source: str, floor: FloorAPI, where: str = "") -> List[str]:
    """Every torch name in source missing from the floor, and every attribute that
    is a Tensor attribute today but not in the floor (unless in NOT_TENSOR)."""
    newer = {
        name for name in dir(torch.Tensor) if not name.startswith("_")
    } - floor.tensor_attributes()
    problems = []
    for line, name, rooted in used_names(source):
        if rooted:
            reason = missing_in_floor(name, floor)
            if reason is not None:
                problems.append(f"{where}:{line}: {reason}")
        elif name in newer and name not in NOT_TENSOR:
            problems.append(
                f"{where}:{line}: Tensor.{name} does not exist in torch "
                f"{floor.version} (if the object is not a tensor: NOT_TENSOR)"
            )
    return list(dict.fromkeys(problems))  # a chain and its prefix: one report


@pytest.fixture(scope="module")
def floor() -> FloorAPI:
    return read_floor(FLOOR_FILE.read_text(encoding="utf-8"))


def test_the_library_uses_only_torch_apis_of_the_floor(floor: FloorAPI) -> None:
    problems = []
    files = sorted(LIBRARY.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        where = str(path.relative_to(ROOT))
        problems += floor_violations(path.read_text(encoding="utf-8"), floor, where)
    assert not problems, "\n".join(problems)


def test_the_floor_list_is_the_torch_that_min_versions_installs(
    floor: FloorAPI,
) -> None:
    script = MIN_VERSIONS_SCRIPT.read_text(encoding="utf-8")
    pin = re.search(r"^TORCH_FLOOR=(\S+)$", script, flags=re.MULTILINE)
    assert pin is not None, "no TORCH_FLOOR=... line in .ci/min_versions"
    assert floor.version.split("+")[0] == pin.group(1)
    assert {"torch", "torch.Tensor", "torch.nn.functional"} <= floor.namespaces
    assert "torch.linalg.vecdot" in floor.names


def test_the_library_reaches_newer_apis_through_compat_only(floor: FloorAPI) -> None:
    # torch.compiler.is_compiling (torch >= 2.3) is used through the compat helper.
    assert missing_in_floor("torch.compiler.is_compiling", floor) is not None
    source = "import torch\nif torch.compiler.is_compiling():\n    pass\n"
    assert floor_violations(source, floor)


SYNTHETIC = FloorAPI(
    version="0.0",
    namespaces=frozenset({"torch", "torch.Tensor", "torch.linalg", "torch.nn"}),
    absent=frozenset({"torch.compiler"}),
    names=frozenset(
        {"torch.Tensor", "torch.Tensor.sum", "torch.linalg", "torch.nn", "torch.exp"}
        | {"torch.nn.functional"}
    ),
)
"""A floor without torch.linalg.vecdot, torch.compiler and most Tensor methods."""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import torch\ntorch.linalg.vecdot(a, b)", ["torch.linalg.vecdot"]),
        ("from torch import linalg as la\nla.vecdot(a, b)", ["torch.linalg.vecdot"]),
        ("from torch.linalg import vecdot", ["torch.linalg.vecdot"]),
        ("import torch\ntorch.compiler.is_compiling()", ["torch.compiler"]),
        ("import torch\nx.diagonal_scatter(y)", ["Tensor.diagonal_scatter"]),
        ("import torch\ntorch.exp(x).sum()", []),
        ("import torch.nn.functional as F\nF.normalize(x)", ["functional is a"]),
        ("import torch\ngetattr(torch.compiler, 'x', None)", ["torch.compiler"]),
        ("import torch\ngetattr(torch, 'compiler', None)", []),
    ],
)
def test_the_check_finds_names_missing_in_a_floor(
    source: str, expected: List[str]
) -> None:
    problems = floor_violations(source, SYNTHETIC)
    assert len(problems) == len(expected), problems
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem
