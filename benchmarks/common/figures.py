"""matplotlib for the benchmarks' plots: imported on first use, saved atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from lightly_er.utils import write_atomic


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure_atomic(figure: Any, path: Path) -> None:
    """Saves a matplotlib figure as PNG, atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    write_atomic(path, buffer.getvalue())
