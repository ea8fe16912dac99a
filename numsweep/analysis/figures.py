"""Figures and files: a new Axes when none is given, the file backend, and saving.

Nothing here runs at import: :func:`use_file_backend` chooses matplotlib's Agg backend for
programs that only write files (the CLI), leaving notebooks and scripts their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from numsweep.analysis.selection import ChartError

MARKERS = ("o", "^", "s", "D", "v", "P", "X")
DASHES = ("-", "--", ":", "-.")
LEGEND_FONTSIZE = 10
"""Legends and notes: the report shows a figure of 12 inches at 1100 pixels, so a size-8
legend there reads as 5 points."""


def new_axes(width: float = 7.0, height: float = 4.5) -> Axes:
    _, ax = plt.subplots(figsize=(width, height), layout="constrained")
    return ax


def save(ax: Axes | Sequence[Axes], path: str | Path) -> Path:
    """Write the figure of ``ax``; the format follows the extension (png, svg, pdf)."""
    path = Path(path)
    first = ax if isinstance(ax, Axes) else next(iter(ax))
    fig = first.figure
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("png", "svg", "pdf"):
        plt.close(fig)
        raise ChartError(f"{path}: unsupported chart format (use .png, .svg or .pdf)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # tight: long labels or a two-line title that the layout could not fit stay whole
        fig.savefig(path, dpi=150, bbox_inches="tight")
    except OSError as exc:
        raise ChartError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path


def use_file_backend() -> None:
    """Draw with matplotlib's Agg backend (files only, no window), unless pyplot already runs
    on a backend chosen by the user (a notebook's inline backend)."""
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules or matplotlib.get_backend().lower() == "agg":
        matplotlib.use("Agg")
