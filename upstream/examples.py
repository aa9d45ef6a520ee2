"""A method pull request's examples and docs page, made from lightly's own.

For each :class:`manifest.Example` of a pull request the generator writes

- ``examples/<layout>/<method>_er.py`` for each of lightly's three layouts: lightly's
  ``examples/<layout>/<method>.py`` from the checkout with the parent loss class
  swapped for the ER class (every whole-word occurrence, so the import and the
  constructor call) and a three-line header. Where the swap needs an argument to
  behave as the docs page says (BYOL's ``criterion(p, z)`` order is
  ``prediction="x0"``), the constructor call also gets :attr:`Example.arguments`.
  Nothing else changes: the example shows that the swap is the whole change, and it
  follows lightly's example when lightly edits it;
- ``docs/source/examples/<method>_er.rst``: a page in the shape of lightly's method
  pages, including the three scripts, listed in ``docs/source/examples/models.rst``'s
  toctree after the parent's page;
- an ``autoclass`` entry with ``:members:`` for the ER class in
  ``docs/source/lightly.loss.rst``, after the parent's.

Every edit of a lightly file finds its spot by exact text and raises
:class:`ExampleError` when the text is not there, so a changed lightly stops the
generator instead of being edited in the wrong place.
"""

from __future__ import annotations

import re
from typing import NamedTuple

LAYOUTS = ("pytorch", "pytorch_lightning", "pytorch_lightning_distributed")
MODELS_RST = "docs/source/examples/models.rst"
LOSS_RST = "docs/source/lightly.loss.rst"


class ExampleError(RuntimeError):
    """An example or docs edit cannot be made (the message says why)."""


class Example(NamedTuple):
    """One method's examples and docs page.

    Attributes:
        method: lightly's example name (``examples/pytorch/<method>.py``).
        title: The page title, for example ``"SimCLR-ER"``.
        parent: The loss class in lightly's example, for example ``"NTXentLoss"``.
        er_class: The ER class that replaces it.
        er_module: The lightly module of the ER class (for the API entry).
        parent_module: The lightly module of the parent (the API entry goes after).
        note: What the swap keeps and changes, one paragraph of reStructuredText.
        arguments: Keyword arguments written into every constructor call of the
            ER class (``'prediction="x0"'``), or empty.
    """

    method: str
    title: str
    parent: str
    er_class: str
    er_module: str
    parent_module: str
    note: str
    arguments: str = ""


def example_path(layout: str, method: str, er: bool) -> str:
    return f"examples/{layout}/{method}{'_er' if er else ''}.py"


def page_path(example: Example) -> str:
    return f"docs/source/examples/{example.method}_er.rst"


def derive_example(text: str, example: Example, layout: str) -> str:
    """lightly's example script with the parent class swapped for the ER class.

    Raises:
        ExampleError: If the script does not name the parent class, or does not
            call it where the example has arguments to pass.
    """
    source = example_path(layout, example.method, False)
    pattern = re.compile(rf"\b{re.escape(example.parent)}\b")
    swapped, count = pattern.subn(example.er_class, text)
    if count == 0:
        raise ExampleError(
            f"{source} does not name {example.parent}: has lightly changed the example?"
        )
    last_line = "# Nothing else differs from the parent's example.\n\n"
    if example.arguments:
        swapped = _add_arguments(swapped, example, source)
        last_line = (
            f"# The one other change: {example.er_class}({example.arguments}).\n\n"
        )
    header = (
        f"# {example.title}: lightly's {example.method} example with "
        f"{example.parent} replaced by\n"
        f"# {example.er_class} (entropy and reconstruction objective, "
        "https://arxiv.org/abs/2307.10907).\n"
    )
    return header + last_line + swapped


def _add_arguments(text: str, example: Example, source: str) -> str:
    """text with example.arguments first in every call of the ER class."""
    call = re.compile(rf"\b{re.escape(example.er_class)}\((\s*\))?")

    def with_arguments(match: re.Match[str]) -> str:
        rest = ")" if match.group(1) else ", "
        return f"{example.er_class}({example.arguments}{rest}"

    text, calls = call.subn(with_arguments, text)
    if calls == 0:
        raise ExampleError(
            f"{source} does not call {example.parent}(...): has lightly changed the "
            "example?"
        )
    return text


_TAB = """\
    .. tab:: {name}

        This example can be run from the command line with::

            python lightly/examples/{layout}/{method}_er.py

        .. literalinclude:: ../../../examples/{layout}/{method}_er.py
"""


def docs_page(example: Example) -> str:
    """The docs page of one ER method, with its three examples."""
    underline = "=" * len(example.title)
    names = ("PyTorch", "Lightning", "Lightning Distributed")
    tabs = "\n".join(
        _TAB.format(name=name, layout=layout, method=example.method)
        for name, layout in zip(names, LAYOUTS, strict=True)
    )
    return (
        f".. _{example.method}-er:\n\n"
        f"{example.title}\n{underline}\n\n"
        f"{example.title} trains :ref:`{example.method}` with the entropy and "
        "reconstruction (ER)\nobjective of Rodriguez-Galvez et al.: the loss "
        "maximizes a lower bound on the\nmutual information between the views, "
        "the entropy of the embeddings plus how\nwell one view reconstructs the "
        f"other. The examples below are lightly's\n{example.method} examples with "
        f"one change, {example.parent} replaced by\n:class:`{example.er_class} "
        f"<{example.er_module}.{example.er_class}>`"
        + (f" (with ``{example.arguments}``)" if example.arguments else "")
        + ", which takes the same constructor arguments\nand the same inputs.\n\n"
        f"{example.note}\n\n"
        "Reference:\n"
        "    `The Role of Entropy and Reconstruction in Multi-View Self-Supervised "
        "Learning, 2023 <https://arxiv.org/abs/2307.10907>`_\n\n"
        ".. tabs::\n\n"
        f"{tabs}"
    )


def edit_models_rst(text: str, example: Example) -> str:
    """models.rst with the ER page listed after the parent's page.

    Raises:
        ExampleError: If the parent's page is not listed exactly once.
    """
    entry = re.compile(rf"^( +){re.escape(example.method)}\.rst\n", re.MULTILINE)
    found = entry.findall(text)
    if len(found) != 1:
        raise ExampleError(
            f"{MODELS_RST}: expected '{example.method}.rst' in the toctree once, "
            f"found it {len(found)} times"
        )
    return entry.sub(
        lambda m: f"{m.group(0)}{m.group(1)}{example.method}_er.rst\n", text
    )


def edit_loss_rst(text: str, example: Example) -> str:
    """lightly.loss.rst with the ER class's entry after the parent's.

    Raises:
        ExampleError: If the parent's entry is not there exactly once.
    """
    parent = f".. autoclass:: {example.parent_module}.{example.parent}\n   :members:\n"
    if text.count(parent) != 1:
        raise ExampleError(
            f"{LOSS_RST}: expected the entry of {example.parent} once, found it "
            f"{text.count(parent)} times"
        )
    entry = f"\n.. autoclass:: {example.er_module}.{example.er_class}\n   :members:\n"
    return text.replace(parent, parent + entry)
