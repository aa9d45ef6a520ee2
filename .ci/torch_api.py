"""Writes the public API of the installed torch, for the static floor check.

tests/test_torch_api.py checks every ``torch.*`` name that lightly_er uses (and every
method it calls that is a ``torch.Tensor`` method today) against the list this script
writes from the oldest torch the library supports, tests/data/torch_api_floor.txt.
Regenerate it after moving the floor, in an environment with that torch:

    python .ci/torch_api.py > tests/data/torch_api_floor.txt

A name the library starts to use from a namespace this list does not dump makes the
test fail and say so; add the namespace to NAMESPACES and regenerate.
"""

from __future__ import annotations

import importlib
import sys
from typing import List

NAMESPACES = (
    "torch",
    "torch.Tensor",
    "torch.autograd",
    "torch.autograd.function",
    "torch.backends",
    "torch.compiler",
    "torch.cuda",
    "torch.distributed",
    "torch.fft",
    "torch.func",
    "torch.linalg",
    "torch.multiprocessing",
    "torch.nn",
    "torch.nn.functional",
    "torch.nn.init",
    "torch.nn.utils",
    "torch.optim",
    "torch.optim.lr_scheduler",
    "torch.special",
    "torch.testing",
    "torch.utils",
    "torch.utils.data",
    "torch.utils.hooks",
)
"""The namespaces whose public names are listed (a class's attributes for a class)."""


def _resolve(dotted: str) -> object:
    """The module or class that a dotted name refers to; raises if it has none."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


def api_lines() -> List[str]:
    """The header and one ``namespace.name`` line per public name, sorted."""
    import torch

    lines = [
        f"# torch {torch.__version__}: the public names of the namespaces below,",
        "# written by .ci/torch_api.py (tests/test_torch_api.py reads it).",
    ]
    names: List[str] = []
    for namespace in NAMESPACES:
        try:
            obj = _resolve(namespace)
        except (ImportError, AttributeError):
            lines.append(f"# absent: {namespace}")
            continue
        lines.append(f"# namespace: {namespace}")
        public = (n for n in dir(obj) if not n.startswith("_"))
        names.extend(f"{namespace}.{name}" for name in public)
    return lines + sorted(names)


if __name__ == "__main__":
    sys.stdout.write("\n".join(api_lines()) + "\n")
