"""The DARTS CNN search space (Liu et al., ICLR 2019; reference quark0/darts `cnn/model_search.py`).

:class:`DartsSupernet` has exactly the reference search network's parameters (same shapes, same order) and computes
the same function; :func:`import_reference_state` maps a reference ``Network.state_dict()`` (plus ``alphas_normal`` /
``alphas_reduce``) onto it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dnas.cells.custom import CellSupernet
from dnas.cells.edges import EdgeOptions
from dnas.genotypes import CellSpec, Genotype, SpaceSpec, register_space
from dnas.ops.darts import DARTS_PRIMITIVES, FactorizedReduce, ReLUConvBN

STEPS = 4
CELL_TYPES = ("normal", "reduce")


def darts_edges(steps: int = STEPS) -> tuple[tuple[int, int], ...]:
    """``(src, dst)`` of the 14 edges in α row order: node ``i+2`` reads states ``0..i+1``."""
    return tuple((j, i + 2) for i in range(steps) for j in range(i + 2))


def darts_space_spec(
    primitives: Sequence[str] = DARTS_PRIMITIVES, name: str = "darts", steps: int = STEPS, any_registered_op=False
) -> SpaceSpec:
    """The genotype rules of a DARTS-style space over ``primitives`` (and every registered op, if asked)."""
    cell = CellSpec(tuple(primitives), 2, steps, edges_per_node=2, any_registered_op=any_registered_op)
    return SpaceSpec(name, {"normal": cell, "reduce": cell})


NASNET_OPS: tuple[str, ...] = DARTS_PRIMITIVES + ("sep_conv_7x7", "conv_7x1_1x7")
"""The DARTS candidates plus the NASNet/AmoebaNet extras (evaluation-network ops)."""

# The DARTS space accepts the NASNet/AmoebaNet extras in genotypes, and any op registered with dnas.ops.register_op:
# the evaluation network builds every registered op, so a search over a user's own ops yields darts genotypes that
# load wherever that op's module is imported, whatever else ran before.
DARTS_SPACE = register_space(darts_space_spec(NASNET_OPS, any_registered_op=True))

NASNET_SPACE = register_space(darts_space_spec(NASNET_OPS, name="nasnet", steps=5))
"""NASNet's cell structure (5 intermediate nodes, two inputs each, concat of the unused nodes) as published by the
DARTS authors for NASNet-A and AmoebaNet-A (quark0/darts ``cnn/genotypes.py``); evaluated in the DARTS network
(:mod:`dnas.export.darts`). Registered here, beside ``darts``, so that ``import dnas`` knows it without export."""


@dataclass(frozen=True)
class CellSlot:
    """Where one cell sits in a DARTS network: its inputs' channels, its own C and output channels."""

    reduction: bool
    reduction_prev: bool
    C_prev_prev: int
    C_prev: int
    C: int
    C_out: int


def darts_stack(
    layers: int, C: int, C_stem: int, multiplier: Callable[[bool], int], reduction_prev: bool = False
) -> list[CellSlot]:
    """The cells of a DARTS network, search or evaluation (reference ``model_search.py`` / ``model.py`` stacking).

    ``layers`` cells, reductions (doubling C) at ``layers//3`` and ``2*layers//3``; cell ``i`` reads the outputs of
    cells ``i-2`` and ``i-1`` (the stem's output for the first two).

    Args:
        layers: number of cells.
        C: channels of the first cells.
        C_stem: channels of the stem's output.
        multiplier: ``reduction -> nodes the cell concatenates``; a cell outputs ``multiplier(reduction) * C``.
        reduction_prev: the stem halves the resolution as a reduction cell does (the ImageNet stem), so cell 0
            reduces input 0 with a FactorizedReduce.
    """
    slots = []
    C_prev_prev = C_prev = C_stem
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        C = 2 * C if reduction else C
        C_out = multiplier(reduction) * C
        slots.append(CellSlot(reduction, reduction_prev, C_prev_prev, C_prev, C, C_out))
        reduction_prev, C_prev_prev, C_prev = reduction, C_prev, C_out
    return slots


def preprocess(C_prev_prev: int, C_prev: int, C: int, reduction_prev: bool, affine: bool) -> tuple[nn.Module, ...]:
    """``(preprocess0, preprocess1)`` of a DARTS cell, search and evaluation alike (reference ``Cell.__init__``).

    Both inputs go to ``C`` channels by ReLU-conv1×1-BN; input 0 by a :class:`~dnas.ops.darts.FactorizedReduce` when
    the previous cell was a reduction.
    """
    if reduction_prev:
        p0: nn.Module = FactorizedReduce(C_prev_prev, C, affine=affine)
    else:
        p0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=affine)
    return p0, ReLUConvBN(C_prev, C, 1, 1, 0, affine=affine)


class DartsSupernet(CellSupernet):
    """The DARTS search network: stem, ``layers`` cells (reduction at ``layers//3`` and ``2*layers//3``), GAP, linear.

    A :class:`~dnas.cells.custom.CellSupernet` with two input nodes, ``steps`` intermediate nodes of all incoming
    edges (:func:`darts_edges`), concat output and the DARTS top-2 rule; each cell preprocesses its two inputs
    (:func:`preprocess`). Edges come from :meth:`EdgeOptions.make_edge <dnas.cells.edges.EdgeOptions.make_edge>`:
    mixed ops with BN after pooling (the DARTS search MixedOp), or with partial channels K > 1
    :class:`~dnas.ops.partial.PartialChannelEdge` around a mixed op of ``C // K`` channels (PC-DARTS). The
    evaluation network of its genotypes is :class:`dnas.export.darts.DartsEvalNetwork` (``dnas.export.build_model``).

    Args:
        init_channels: C of the first cells (paper: 16).
        num_classes: classifier outputs.
        layers: number of cells (paper: 8).
        in_channels: image channels (3 for CIFAR, 1 for digits).
        primitives: candidate ops in α column order (DARTS-PT's "s5" space drops ``none``); any registered ops.
        steps: intermediate nodes per cell (4).
        stem_multiplier: the stem outputs ``stem_multiplier * init_channels`` channels (3).
        edge_options: the search edges (:class:`~dnas.cells.edges.EdgeOptions`). The mixed ops default to
            ``"fused"`` here: the same outputs (bitwise) and gradients as ``"naive"``, 23× less saved activation
            memory, 10× lower peak RSS and 1.2× faster steps on the CPU benchmark (docs/benchmarks.md). PC-DARTS:
            ``partial_channels=4`` (must divide ``init_channels``) and ``edge_normalization=True`` (β drawn after
            both α as the PC-DARTS reference does; the genotype selects edges by α·β).
    """

    space_name = "darts"
    genotype_spec = DARTS_SPACE
    num_inputs = 2
    cell_output = "concat"
    cell_types = CELL_TYPES
    genotype_rule = "topk"
    pool_bn = True
    default_mixed_op_impl = "fused"

    def __init__(
        self,
        init_channels: int = 16,
        num_classes: int = 10,
        layers: int = 8,
        in_channels: int = 3,
        primitives: Sequence[str] = DARTS_PRIMITIVES,
        steps: int = STEPS,
        stem_multiplier: int = 3,
        edge_options: EdgeOptions | None = None,
    ):
        super().__init__(edge_options, primitives)
        k = self.edge_options.partial_channels
        if init_channels % k:
            raise ValueError(f"edge_options.partial_channels ({k}) must divide init_channels ({init_channels})")
        if init_channels < 2 or init_channels % 2:
            raise ValueError(f"init_channels must be even and >= 2 (FactorizedReduce halves it), got {init_channels}")
        self.in_channels = in_channels
        self._build = dict(init_channels=init_channels, layers=layers, num_classes=num_classes, in_channels=in_channels)
        for name, value in (*self._build.items(), ("steps", steps), ("stem_multiplier", stem_multiplier)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}; set model.init_args.supernet.init_args.{name}")
        # this supernet's own node count; the registered ``darts`` spec that genotype files are read with never
        # changes (it takes any registered op, DARTS_SPACE)
        self.num_nodes = steps
        C_stem = stem_multiplier * init_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(C_stem),
        )
        self.cells = nn.ModuleList()
        slots = darts_stack(layers, init_channels, C_stem, lambda reduction: steps)
        for slot in slots:
            pre = preprocess(slot.C_prev_prev, slot.C_prev, slot.C, slot.reduction_prev, affine=False)
            group, stride = ("reduce", 2) if slot.reduction else ("normal", 1)
            cell = self.make_cell(slot.C, group, stride, preprocess=pre)
            cell.reduction = slot.reduction  # the DARTS cells' flag, as the evaluation network's cells have it
            self.cells.append(cell)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(slots[-1].C_out, num_classes)
        self._used_groups.update(CELL_TYPES)  # both α even when layers < 3 uses one cell type (the reference's)

    def forward(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits for images ``x`` (B, C_in, H, W); ``weights`` maps ``normal``/``reduce`` to (14, K) edge weights."""
        w = self.cell_weights(weights)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell((s0, s1), w)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))

    def build_options(self) -> dict[str, Any]:
        """The evaluation network at the search network's sizes (``dnas.export.darts.DartsEvalNetwork`` options)."""
        return dict(self._build)

    @classmethod
    def from_genotype(cls, genotype: Genotype | str, *, affine: bool = True, **options: Any) -> CellSupernet:
        """Raises ``TypeError`` naming the builder: a DARTS genotype's network is ``DartsEvalNetwork``."""
        raise TypeError(
            "the DARTS evaluation network is dnas.export.darts.DartsEvalNetwork: build it with "
            "dnas.export.build_model(genotype, **options), not DartsSupernet.from_genotype"
        )


_REF_EDGE = re.compile(r"^cells\.(\d+)\._ops\.(\d+)\.")


def import_reference_state(supernet: DartsSupernet, state: Mapping[str, torch.Tensor], strict: bool = True) -> None:
    """Load a supernet saved by the reference code (quark0/darts ``cnn/model_search.py``).

    ``state`` is ``Network.state_dict()`` plus ``alphas_normal`` and ``alphas_reduce`` (the reference keeps α outside
    the state dict; put them in under those keys). Key layout: ``cells.<i>._ops.<edge>._ops.<op>...`` maps to ours
    ``cells.<i>.dag.edges.<edge>._ops.<op>...``; every other module name is identical.

    PC-DARTS (yuhuixu1993/PC-DARTS ``model_search.py``) saves the same layout; with partial channels
    (``edge_options.partial_channels > 1``) edges map to ``cells.<i>.dag.edges.<edge>.op._ops.<op>...`` (the wrapped
    mixed op), and ``betas_normal`` / ``betas_reduce`` (put in beside the α) map to the groups' β.

    Raises:
        KeyError: a key is missing or unexpected (with ``strict``), naming it.
        ValueError: a tensor's shape does not match, naming the key and both shapes.
    """
    ours = supernet.state_dict()
    partial = supernet.edge_options.partial_channels > 1
    edge_prefix = r"cells.\1.dag.edges.\2.op." if partial else r"cells.\1.dag.edges.\2."
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in ("alphas_normal", "alphas_reduce"):
            new = f"arch.{key.split('_', 1)[1]}.alpha"
        elif key in ("betas_normal", "betas_reduce"):
            new = f"arch.{key.split('_', 1)[1]}.beta"
        else:
            new = _REF_EDGE.sub(edge_prefix, key)
        if new not in ours:
            if strict:
                raise KeyError(f"reference key {key!r} (as {new!r}) has no counterpart in this DartsSupernet")
            continue
        if tuple(ours[new].shape) != tuple(value.shape):
            raise ValueError(
                f"shape mismatch for {key!r}: reference {tuple(value.shape)}, ours {tuple(ours[new].shape)}"
            )
        mapped[new] = value
    selection = supernet.selection_buffer_names()
    missing = [k for k in ours if k not in mapped and k not in selection]
    if strict and missing:
        raise KeyError(f"reference state lacks {len(missing)} key(s), e.g. {missing[:3]}")
    supernet.load_state_dict(mapped, strict=False)
