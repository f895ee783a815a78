"""The NAS-Bench-201 search space (Dong & Yang, ICLR 2020; D-X-Y/AutoDL-Projects).

One cell type: input node 0, nodes 1..3, all six edges ``i -> j`` (α rows in the benchmark's order ``1<-0, 2<-0,
2<-1, 3<-0, 3<-1, 3<-2``), five ops, output = node 3. The skeleton: stem conv3×3 + BN; ``N`` cells at C; a residual
reduction block to 2C; ``N`` cells; a block to 4C; ``N`` cells; BN + ReLU, global average pooling, linear.

* :class:`NB201Supernet` is the search network (cells with ``affine=False``, ``track_running_stats=True``; the
  convs carry the reference's bias, see :class:`~dnas.ops.nb201.NorConv`);
* ``NB201Supernet.from_genotype(genotype)`` (or ``dnas.export.build_model``) is the evaluation network
  (``affine=True`` ops, no conv bias), with exactly the benchmark's parameter counts;
* :func:`genotype_to_nb201_str` / :func:`nb201_str_to_genotype` write and read the benchmark's architecture strings
  (``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``), to look a found cell up in the published tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from dnas.cells.cell import DiscreteCell, SearchCell
from dnas.cells.custom import CellSupernet
from dnas.cells.declarations import dense_edges, space_spec_of
from dnas.cells.edges import EdgeOptions
from dnas.genotypes import CellGenotype, Edge, Genotype, GenotypeError
from dnas.ops.nb201 import NB201_PRIMITIVES, ResNetBasicBlock

NB201_EDGES: tuple[tuple[int, int], ...] = dense_edges(1, 3)
"""``(src, dst)`` of the six edges in α row order: (0,1), (0,2), (1,2), (0,3), (1,3), (2,3)."""

NB201_CELL = "cell"
"""Name of the single cell type in NAS-Bench-201 genotypes."""


class NB201Supernet(CellSupernet):
    """The NAS-Bench-201 network (search supernet, or the evaluation network via :meth:`from_genotype`).

    The cell (module docstring) and the rule (per-edge argmax, ``none`` allowed) are :class:`CellSupernet`'s defaults.

    Args:
        init_channels: C of the first stage (benchmark: 16); stages have C, 2C, 4C channels.
        cells_per_stage: N, cells per stage (benchmark: 5, so 15 cells and 2 reduction blocks).
        num_classes: classifier outputs (CIFAR-10: 10, CIFAR-100: 100, ImageNet16-120: 120).
        in_channels: image channels of the stem (3).
        edge_options: the search edges (:class:`~dnas.cells.edges.EdgeOptions`).
    """

    space_name = "nb201"
    candidates = NB201_PRIMITIVES
    cell_types = (NB201_CELL,)

    def __init__(
        self,
        init_channels: int = 16,
        cells_per_stage: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
        edge_options: EdgeOptions | None = None,
    ):
        super().__init__(edge_options)
        if init_channels < 1 or cells_per_stage < 1 or num_classes < 1:
            raise ValueError(
                f"need init_channels >= 1, cells_per_stage >= 1, num_classes >= 1; got {init_channels}, "
                f"{cells_per_stage}, {num_classes}"
            )
        self.num_classes, self.in_channels = num_classes, in_channels
        C = init_channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cells = nn.ModuleList()
        C_prev = C
        for stage, C_curr in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                self.cells.append(ResNetBasicBlock(C_prev, C_curr, 2))
            for _ in range(cells_per_stage):
                self.cells.append(self.make_cell(C_curr))
            C_prev = C_curr
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits for images ``x`` (B, C_in, H, W); ``weights`` maps ``"cell"`` to (6, 5) edge weights."""
        w = self.cell_weights(weights)
        h = self.stem(x)
        for block in self.cells:
            h = block(h, w) if isinstance(block, (SearchCell, DiscreteCell)) else block(h)
        h = self.global_pooling(self.lastact(h))
        return self.classifier(h.flatten(1))


# ---------------------------------------------------------------------- architecture strings
_TOKEN = re.compile(r"^([A-Za-z0-9_]+)~(\d+)$")


def genotype_to_nb201_str(genotype: Genotype) -> str:
    """The benchmark's string of a NAS-Bench-201 genotype: per node ``|op~src|...|``, nodes joined by ``+``.

    Raises:
        GenotypeError: the genotype is not a complete NAS-Bench-201 cell.
    """
    genotype.validate(space_spec_of(NB201Supernet), source="NAS-Bench-201 genotype")
    cell = genotype.cells[NB201_CELL]
    nodes = []
    for dst in (1, 2, 3):
        ins = sorted(cell.inputs_of(dst), key=lambda e: e.src)
        nodes.append("|" + "|".join(f"{e.op}~{e.src}" for e in ins) + "|")
    return "+".join(nodes)


def nb201_str_to_genotype(text: str) -> Genotype:
    """Parse a benchmark architecture string (``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``).

    Raises:
        GenotypeError: malformed string, unknown op, or not exactly one edge per ``(src, dst)`` pair, with the part
            at fault named.
    """
    if not isinstance(text, str):
        raise GenotypeError(f"a NAS-Bench-201 string must be str, got {type(text).__name__}")
    parts = text.strip().split("+")
    if len(parts) != 3:
        raise GenotypeError(
            f"NAS-Bench-201 string {text!r} has {len(parts)} node group(s) separated by '+'; expected 3 (nodes 1..3)"
        )
    edges = []
    for dst, part in enumerate(parts, start=1):
        if not (part.startswith("|") and part.endswith("|")) or len(part) < 3:
            raise GenotypeError(f"node {dst} group {part!r} must look like |op~src|op~src|")
        seen = set()
        for token in part[1:-1].split("|"):
            m = _TOKEN.match(token)
            if m is None:
                raise GenotypeError(f"node {dst}: token {token!r} is not 'op~src'")
            op, src = m.group(1), int(m.group(2))
            if op not in NB201_PRIMITIVES:
                raise GenotypeError(f"node {dst}: op {op!r} is not a NAS-Bench-201 op; ops: {list(NB201_PRIMITIVES)}")
            if not 0 <= src < dst or src in seen:
                raise GenotypeError(f"node {dst}: input {src} is out of range 0..{dst - 1} or repeated")
            seen.add(src)
            edges.append(Edge(op, src, dst))
        if len(seen) != dst:
            raise GenotypeError(f"node {dst} lists inputs {sorted(seen)}; NAS-Bench-201 needs all of 0..{dst - 1}")
    edges.sort(key=lambda e: NB201_EDGES.index((e.src, e.dst)))
    return Genotype(NB201Supernet.space_name, {NB201_CELL: CellGenotype(tuple(edges), (3,))})
