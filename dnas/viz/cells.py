"""Drawings of genotypes: DAG cells (DARTS normal/reduce, NAS-Bench-201, a user's) and chains (FBNet layer strips).

Everything is read from the genotype's edges ``(op, src, dst)`` and ``concat``, so any space draws without
registering anything. Layout is pure matplotlib (an arc diagram whose labels cannot collide, see
:func:`draw_dag_cell`); when the graphviz ``dot`` binary is on ``PATH`` the same graph can be rendered by it instead
(:func:`render_genotype` with ``engine='graphviz'``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from dnas.genotypes import CellGenotype, Genotype, get_space_spec
from dnas.io import atomic_write_bytes
from dnas.storage import Location, location, with_suffix
from dnas.viz.style import new_figure, op_colors, save_figure

ENGINES = ("auto", "matplotlib", "graphviz")

_INPUT, _NODE, _OUTPUT = "#a8d5f7", "#fbe7a1", "#b7e4b0"


def is_chain(cell: CellGenotype) -> bool:
    """A chain: one input, every edge ``l -> l+1``, one edge per layer (FBNet-style layer lists)."""
    dsts = [e.dst for e in cell.edges]
    return (
        all(e.dst == e.src + 1 for e in cell.edges)
        and len(set(dsts)) == len(dsts)
        and len({e.src for e in cell.edges} - set(dsts)) == 1
    )


def cell_colors(genotype: Genotype) -> dict[str, tuple]:
    """Colours per op, stable for a space (candidate order from its registered spec when there is one)."""
    spec = get_space_spec(genotype.space)
    ops: list[str] = []
    if spec is not None:
        for cs in spec.cells.values():
            ops.extend(cs.ops)
    for cell in genotype.cells.values():
        ops.extend(cell.ops())
    return op_colors(list(dict.fromkeys(ops)))


# ---------------------------------------------------------------------------------------------------------- layout
def cell_nodes(cell: CellGenotype) -> tuple[list[int], list[int], bool]:
    """``(nodes, inputs, extra_output)``: nodes in order; ``extra_output`` when the output is a concat of nodes.

    A cell whose concat is a single intermediate node (NAS-Bench-201) draws that node as the output instead.
    """
    dsts = {e.dst for e in cell.edges}
    nodes = sorted({e.src for e in cell.edges} | dsts | set(cell.concat))
    inputs = [n for n in nodes if n not in dsts]
    extra = len(cell.concat) > 1 or any(c in inputs for c in cell.concat)
    return nodes, inputs, extra


def node_label(node: int, inputs: Sequence[int]) -> str:
    if node == -1:
        return "$c_{k}$" if len(inputs) == 2 else "out"
    if node in inputs:
        if len(inputs) == 2:
            return "$c_{k-2}$" if node == inputs[0] else "$c_{k-1}$"
        return "in" if len(inputs) == 1 else f"in{node}"
    return str(node)


def _arc_height(span: int) -> float:
    """Apex height (inches) of an arc over ``span`` node gaps: distinct spans differ by more than a label's height."""
    return 0.35 + 0.38 * span


def _spacing(cell: CellGenotype) -> float:
    """Gap between nodes (inches), wide enough for the longest op label at 7.5 pt."""
    return max(1.5, 0.066 * max(len(op) for op in cell.ops()) + 0.55)


def draw_dag_cell(ax: Axes, cell: CellGenotype, colors: dict[str, tuple], title: str = "") -> None:
    """Draw a DAG cell on ``ax`` as an arc diagram: nodes in order on a line, each edge an arc above it.

    An arc's label sits at its apex, whose height grows with the edge's span (in node positions), so two labels can
    only meet if two edges join the same pair of nodes. Arcs leave a node from the right half of its top and enter
    from the left half, nested by span, so arrowheads do not pile up. The output (concat) node is joined by dotted
    arcs below the line.
    """
    nodes, inputs, extra = cell_nodes(cell)
    order = nodes + ([-1] if extra else [])
    index = {n: i for i, n in enumerate(order)}
    gap, w, h = _spacing(cell), 0.8, 0.45
    pos = {n: (i * gap, 0.0) for i, n in enumerate(order)}
    patches = {}
    for n, (x, y) in pos.items():
        is_out = n == -1 or (not extra and n in cell.concat)
        color = _INPUT if n in inputs else _OUTPUT if is_out else _NODE
        patch = FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.03,rounding_size=0.1",
            facecolor=color,
            edgecolor="#333333",
            linewidth=1.0,
            zorder=3,
        )
        ax.add_patch(patch)
        patches[n] = patch
        ax.text(x, y, node_label(n, inputs), ha="center", va="center", fontsize=10, zorder=4)

    def span(e) -> int:
        return index[e.dst] - index[e.src]

    # attachment points on the top of each box: outgoing on the right half (longest outermost = leftmost),
    # incoming on the left half (longest outermost = rightmost)
    start, end = {}, {}
    for n in order:
        outs = sorted((i for i, e in enumerate(cell.edges) if e.src == n), key=lambda i: (-span(cell.edges[i]), i))
        ins = sorted((i for i, e in enumerate(cell.edges) if e.dst == n), key=lambda i: (span(cell.edges[i]), i))
        for k, i in enumerate(outs):
            start[i] = pos[n][0] + 0.05 + 0.3 * (k + 0.5) / len(outs)
        for k, i in enumerate(ins):
            end[i] = pos[n][0] - 0.35 + 0.3 * (k + 0.5) / len(ins)
    top = 0.5
    for i, e in enumerate(cell.edges):
        x0, x1, y = start[i], end[i], h / 2 + 0.03
        dup = sum(1 for f in cell.edges[:i] if (f.src, f.dst) == (e.src, e.dst))
        apex = _arc_height(span(e)) + 0.3 * dup
        color = colors.get(e.op, (0.2, 0.2, 0.2, 1.0))
        ax.add_patch(
            FancyArrowPatch(
                (x0, y),
                (x1, y),
                connectionstyle=f"arc3,rad={-2 * (apex - y) / (x1 - x0)}",
                arrowstyle="-|>",
                mutation_scale=11,
                color=color,
                linewidth=1.5,
                linestyle="--" if e.op == "none" else "-",
                shrinkA=0,
                shrinkB=0,
                zorder=2,
            )
        )
        # arc3's control point sits rad·chord off the chord; the quadratic Bézier's apex is half-way there
        top = max(top, apex + 0.2)
        ax.text(
            (x0 + x1) / 2,
            apex,
            e.op,
            fontsize=7.5,
            ha="center",
            va="center",
            zorder=5,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": color, "linewidth": 0.9},
        )
    bottom = -0.4
    if extra:
        for n in cell.concat:
            (x0, y0), (x1, _) = pos[n], pos[-1]
            ax.add_patch(
                FancyArrowPatch(
                    (x0, y0),
                    (x1, y0),
                    connectionstyle="arc3,rad=0.25",
                    arrowstyle="-|>",
                    mutation_scale=9,
                    color="#888888",
                    linewidth=0.9,
                    linestyle=":",
                    patchA=patches[n],
                    patchB=patches[-1],
                    zorder=1,
                )
            )
            bottom = min(bottom, -0.125 * (x1 - x0) - 0.1)
    _finish(ax, (-0.5, (len(order) - 1) * gap + 0.5), (bottom - 0.1, top + 0.05), title)


def draw_chain(ax: Axes, cell: CellGenotype, colors: dict[str, tuple], title: str = "", per_row: int = 11) -> None:
    """Draw a chain as a strip of layer boxes (wrapped every ``per_row`` layers); skips drawn dashed."""
    from dnas.ops import PARAMETER_FREE_OPS

    edges = sorted(cell.edges, key=lambda e: e.src)
    w, h, gap = 1.5, 0.8, 0.45
    rows = (len(edges) + per_row - 1) // per_row
    centers = []
    for i, e in enumerate(edges):
        r, c = divmod(i, per_row)
        x, y = c * (w + gap), -r * (h + 0.9)
        centers.append((x, y))
        free = e.op in PARAMETER_FREE_OPS or e.op in ("skip", "identity")
        color = colors.get(e.op, (0.6, 0.6, 0.6, 1.0))
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - h / 2),
                w,
                h,
                boxstyle="round,pad=0.03,rounding_size=0.12",
                facecolor=(*color[:3], 0.35 if free else 0.75),
                edgecolor=color,
                linewidth=1.3,
                linestyle="--" if free else "-",
                zorder=3,
            )
        )
        ax.text(x, y, e.op.replace("_", "_\u200b"), ha="center", va="center", fontsize=7, wrap=True, zorder=4)
        ax.text(x, y - h / 2 - 0.06, f"L{e.dst}", ha="center", va="top", fontsize=6.5, color="#555555")
    for i in range(len(centers) - 1):
        (x0, y0), (x1, y1) = centers[i], centers[i + 1]
        if y0 == y1:
            start = (x0 + w / 2, y0)
        else:  # wrap: down from the row's last box, back left along the gap, then down into the next row
            mid = (y0 + y1) / 2 - 0.22
            ax.plot([x0, x0, x1], [y0 - h / 2, mid, mid], color="#555555", lw=1.0)
            start = (x1, mid)
        end = (x1 - w / 2, y1) if y0 == y1 else (x1, y1 + h / 2)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9, color="#555555", shrinkA=0))
    xmax = (min(per_row, len(edges)) - 1) * (w + gap) + w / 2 + 0.3
    _finish(ax, (-w / 2 - 0.3, xmax), (-(rows - 1) * (h + 0.9) - h / 2 - 0.35, h / 2 + 0.15), title)


def _finish(ax: Axes, xlim: tuple[float, float], ylim: tuple[float, float], title: str) -> None:
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=11)


def _cell_extent(cell: CellGenotype, per_row: int) -> tuple[float, float]:
    """Width and height (inches) a cell's drawing needs."""
    if is_chain(cell):
        n = len(cell.edges)
        return 0.95 * min(n, per_row) + 0.5, 1.05 * ((n + per_row - 1) // per_row) + 0.7
    nodes, _, extra = cell_nodes(cell)
    order = nodes + ([-1] if extra else [])
    gap = _spacing(cell)
    spans = [order.index(e.dst) - order.index(e.src) for e in cell.edges]
    up = _arc_height(max(spans)) + 0.5
    down = 0.125 * (len(order) - 1) * gap * int(extra) + 0.5
    return (len(order) - 1) * gap + 1.0, up + down + 0.4


def draw_genotype(
    genotype: Genotype, cells: Iterable[str] | None = None, dpi: int = 100, per_row: int = 11, title: str | None = None
) -> Figure:
    """Draw ``genotype``'s cells (all, or those named in ``cells``) stacked vertically in one figure.

    DAG cells are drawn as graphs with op-labelled edges; chain cells as layer strips.
    """
    names = list(genotype.cells) if cells is None else list(cells)
    missing = [n for n in names if n not in genotype.cells]
    if missing or not names:
        raise ValueError(f"genotype has cells {list(genotype.cells)}; cannot draw {missing or names}")
    extents = [_cell_extent(genotype.cells[n], per_row) for n in names]
    width = max(w for w, _ in extents)
    height = sum(h for _, h in extents) + (0.4 if title else 0.0)
    fig = new_figure(max(width, 3.0), height, dpi)
    axes = fig.subplots(len(names), 1, squeeze=False, gridspec_kw={"height_ratios": [h for _, h in extents]})
    colors = cell_colors(genotype)
    for ax, name in zip(axes[:, 0], names):
        cell = genotype.cells[name]
        if is_chain(cell):
            draw_chain(ax, cell, colors, f"{name} (chain, {len(cell.edges)} layers)", per_row)
        else:
            draw_dag_cell(ax, cell, colors, name)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------------------------------------------- graphviz
def to_dot(genotype: Genotype, cells: Iterable[str] | None = None) -> str:
    """The genotype as a graphviz DOT digraph (one cluster per cell, edges labelled with their op)."""
    names = list(genotype.cells) if cells is None else list(cells)
    colors = {op: to_hex(c) for op, c in cell_colors(genotype).items()}
    lines = ["digraph genotype {", '  rankdir=LR; node [shape=box, style="rounded,filled", fontname=helvetica];']
    lines.append("  edge [fontname=helvetica, fontsize=10];")
    for ci, name in enumerate(names):
        cell = genotype.cells[name]
        nodes, inputs, extra = cell_nodes(cell)
        lines.append(f'  subgraph cluster_{ci} {{ label="{_esc(name)}";')
        for n in nodes:
            fill = _INPUT if n in inputs else _NODE
            lines.append(f'    c{ci}_{n} [label="{_dot_label(n, inputs)}", fillcolor="{fill}"];')
        for e in cell.edges:
            style = f'color="{colors.get(e.op, "#333333")}"' + (", style=dashed" if e.op == "none" else "")
            lines.append(f'    c{ci}_{e.src} -> c{ci}_{e.dst} [label="{_esc(e.op)}", {style}];')
        if extra:
            lines.append(f'    c{ci}_out [label="{_dot_label(-1, inputs)}", fillcolor="{_OUTPUT}"];')
            lines.extend(f"    c{ci}_{n} -> c{ci}_out [style=dotted, color=gray];" for n in cell.concat)
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot_label(node: int, inputs: Sequence[int]) -> str:
    """:func:`node_label` without its TeX markup."""
    return _esc(node_label(node, inputs).replace("$", "").replace("_{", "_").replace("}", ""))


def render_genotype(
    genotype: Genotype,
    path: str | Path,
    formats: Sequence[str] = ("png", "svg"),
    engine: str = "auto",
    cells: Iterable[str] | None = None,
    dpi: int = 120,
    per_row: int = 11,
) -> list[Location]:
    """Write drawings of ``genotype`` to ``path`` with each suffix in ``formats``; returns the files written.

    Args:
        genotype: what to draw.
        path: output path or fsspec URL; its suffix is replaced by each format.
        formats: ``png``, ``svg``, ``pdf``.
        engine: ``"matplotlib"`` (always available), ``"graphviz"`` (needs ``dot`` on PATH; chains still use
            matplotlib), or ``"auto"`` (matplotlib: the same picture on every machine).
        cells: cell names to draw (default all).
        dpi: PNG resolution.
        per_row: layers per row of a chain strip.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; allowed: {list(ENGINES)}")
    path = location(path)
    names = list(genotype.cells) if cells is None else list(cells)
    if engine == "graphviz":
        if shutil.which("dot") is None:
            raise RuntimeError("engine='graphviz' needs the graphviz 'dot' binary on PATH; use engine='matplotlib'")
        if not any(is_chain(genotype.cells[n]) for n in names if n in genotype.cells):
            dot = to_dot(genotype, names).encode()
            run = [["dot", f"-T{fmt}", f"-Gdpi={dpi}"] for fmt in formats]
            data = [subprocess.run(cmd, input=dot, capture_output=True, check=True).stdout for cmd in run]
            return [atomic_write_bytes(with_suffix(path, "." + fmt), d) for fmt, d in zip(formats, data)]
    fig = draw_genotype(genotype, names, dpi=dpi, per_row=per_row)
    return save_figure(fig, path, formats, dpi=dpi)
