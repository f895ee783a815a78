"""Shared drawing helpers: headless figures (no pyplot state), op colours, PNG/SVG saving."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dnas.io import atomic_write_bytes
from dnas.storage import Location, location, with_suffix

IMAGE_FORMATS = ("png", "svg", "pdf")


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure bound to the Agg canvas: never touches pyplot or a GUI backend, so it is safe anywhere."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int | None = None, tight: bool = True) -> bytes:
    """Render ``fig`` to ``png``/``svg``/``pdf`` bytes; ``tight`` crops to the drawn content (costs a second draw)."""
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; allowed: {list(IMAGE_FORMATS)}")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight" if tight else None, facecolor="white")
    return buf.getvalue()


def save_figure(
    fig: Figure, path: str | Path, formats: Iterable[str] = ("png",), dpi: int | None = None, tight: bool = True
) -> list[Location]:
    """Save ``fig`` as ``path`` (path or fsspec URL) with each suffix in ``formats``, atomically; returns the files."""
    path = location(path)
    return [atomic_write_bytes(with_suffix(path, "." + fmt), figure_bytes(fig, fmt, dpi, tight)) for fmt in formats]


def op_colors(ops: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """One colour per op, by position in ``ops``; parameter-free ops get greys so they stand out as such."""
    from matplotlib import colormaps

    from dnas.ops import PARAMETER_FREE_OPS

    # qualitative palettes without their greys (greys mark parameter-free ops)
    small = [colormaps["tab10"](i) for i in range(10) if i != 7]
    palette = small if len(ops) <= 9 else [colormaps["tab20"](i) for i in range(20) if i not in (14, 15)]
    greys = [(0.45, 0.45, 0.45, 1.0), (0.62, 0.62, 0.62, 1.0), (0.3, 0.3, 0.3, 1.0), (0.75, 0.75, 0.75, 1.0)]
    colors: dict[str, tuple[float, float, float, float]] = {}
    n_free = n_param = 0
    for op in dict.fromkeys(ops):
        if op in PARAMETER_FREE_OPS and op != "skip_connect" and n_free < len(greys):
            colors[op] = greys[n_free]
            n_free += 1
        else:
            colors[op] = tuple(palette[n_param % len(palette)])
            n_param += 1
    return colors
