"""Method names: ``<method>`` runs lightly's objective, ``<method>_er`` the ER one.

The one rule every benchmark uses to turn a method's name into what it builds (the
CIFAR-10 sweep's :func:`benchmarks.cifar.methods.parse_method`, the ImageNet mains'
``--methods``): :func:`with_er_twins` lists the names, :func:`split_method` reads
one, :func:`method_table` maps every name to its builder and objective. Importable
without torch (``--help`` reads the names).
"""

from __future__ import annotations

from typing import Dict, Iterable, Literal, Mapping, Sequence, Tuple, TypeVar

Objective = Literal["original", "er"]
"""``"original"``: lightly's loss and heads; ``"er"``: their lightly-er subclasses."""

ER_SUFFIX = "_er"
"""The suffix that selects a method's ER objective."""

T = TypeVar("T")


def with_er_twins(methods: Iterable[str]) -> Tuple[str, ...]:
    """``("dino", "byol")`` -> ``("dino", "dino_er", "byol", "byol_er")``."""
    return tuple(name + suffix for name in methods for suffix in ("", ER_SUFFIX))


def split_method(name: str, methods: Sequence[str]) -> Tuple[str, Objective]:
    """``"byol_er"`` -> (``"byol"``, ``"er"``); ``"byol"`` -> (``"byol"``, ``"original"``).

    Args:
        name: A method name, with or without the ER suffix.
        methods: The benchmark's methods (without the suffix).

    Raises:
        ValueError: If the name is not a method or its twin; the message lists the
            known names.
    """
    known = with_er_twins(methods)
    if name not in known:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(known)}")
    if name.endswith(ER_SUFFIX) and name.removesuffix(ER_SUFFIX) in methods:
        return name.removesuffix(ER_SUFFIX), "er"
    return name, "original"


def method_table(builders: Mapping[str, T]) -> Dict[str, Tuple[T, Objective]]:
    """Every method and its twin with its builder and objective, in order.

    Examples:
        >>> method_table({"byol": "BYOL"})
        {'byol': ('BYOL', 'original'), 'byol_er': ('BYOL', 'er')}
    """
    table: Dict[str, Tuple[T, Objective]] = {}
    for name, builder in builders.items():
        table[name] = (builder, "original")
        table[name + ER_SUFFIX] = (builder, "er")
    return table


__all__ = ["ER_SUFFIX", "Objective", "method_table", "split_method", "with_er_twins"]
