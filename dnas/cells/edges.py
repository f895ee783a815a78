"""Search edges: the options every search space takes for them, and the one function that builds them.

:class:`EdgeOptions` says how a supernet's search edges compute (mixed-op implementation, PC-DARTS partial channels
and edge normalisation). Every space takes this one object as its ``edge_options`` argument, and
:meth:`EdgeOptions.make_edge` is the only place a search edge (a mixed op, partial-channel wrapped or not) is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from torch import nn

from dnas.ops.mixed import MIXED_OP_IMPLS, MixedOp
from dnas.ops.partial import PartialChannelEdge


@dataclass(frozen=True)
class EdgeOptions:
    """How the search edges of a supernet compute; every space takes this object as ``edge_options``.

    In a config: ``edge_options: {mixed_op_impl: fused, partial_channels: 4, edge_normalization: true}``.

    Args:
        mixed_op_impl: mixed-op implementation (:data:`dnas.ops.MIXED_OP_IMPLS`); None: the space's default
            (:attr:`Supernet.default_mixed_op_impl <dnas.cells.base.Supernet.default_mixed_op_impl>`: ``"fused"`` on
            DARTS, ``"naive"`` elsewhere). ``"fused"`` gives the same outputs and gradients as ``"naive"`` with a
            fraction of the saved activations (README); ``"naive"`` is needed only for double backward (exact
            second-order gradients through autograd).
        partial_channels: PC-DARTS' K (Xu et al., ICLR 2020): each edge's ops see the first ``C/K`` channels on
            axis 1, the rest bypass (:class:`~dnas.ops.partial.PartialChannelEdge`); 1 = off.
        edge_normalization: PC-DARTS edge normalisation: every architecture group gets β (one per edge); per node,
            the softmax of β over the incoming edges scales each edge's output, and the genotype rule reads α·β.
    """

    mixed_op_impl: str | None = None
    partial_channels: int = 1
    edge_normalization: bool = False

    def __post_init__(self) -> None:
        if self.mixed_op_impl is not None and self.mixed_op_impl not in MIXED_OP_IMPLS:
            raise ValueError(f"mixed_op_impl must be one of {MIXED_OP_IMPLS}, got {self.mixed_op_impl!r}")
        if isinstance(self.partial_channels, bool) or not isinstance(self.partial_channels, int):
            raise ValueError(f"partial_channels must be an int >= 1, got {self.partial_channels!r}")
        if self.partial_channels < 1:
            raise ValueError(f"partial_channels must be >= 1, got {self.partial_channels}")

    def with_default_impl(self, impl: str) -> EdgeOptions:
        """These options with ``mixed_op_impl`` set to ``impl`` when it is None (the space's default)."""
        return self if self.mixed_op_impl is not None else replace(self, mixed_op_impl=impl)

    def make_edge(
        self,
        channels: int,
        stride: int,
        primitives: Sequence[str],
        affine: bool = False,
        pool_bn: bool = False,
        C_out: int | None = None,
    ) -> nn.Module:
        """One search edge, called as ``edge(x, weights_row)``: a mixed op, partial-channel wrapped when K > 1.

        Args:
            channels: the edge's input channels (axis 1).
            stride: stride of every candidate.
            primitives: candidate op names in α column order.
            affine: affine flag of the candidates' norms.
            pool_bn: append ``BatchNorm2d(affine=False)`` to pooling candidates (the DARTS search mixed op).
            C_out: output channels when they differ from ``channels``.
        """
        if self.mixed_op_impl is None:
            raise ValueError("EdgeOptions.mixed_op_impl is None; the supernet resolves it (Supernet.edge_options)")
        k = self.partial_channels
        if k == 1:
            return MixedOp(channels, stride, primitives, self.mixed_op_impl, affine, pool_bn=pool_bn, C_out=C_out)
        if C_out is not None and C_out != channels:
            raise ValueError(
                f"partial_channels={k} needs edges with as many output as input channels; got {channels} -> {C_out}"
            )
        if channels % k:
            raise ValueError(f"partial_channels={k} must divide the edge's channels ({channels})")
        op = MixedOp(channels // k, stride, primitives, self.mixed_op_impl, affine, pool_bn=pool_bn)
        return PartialChannelEdge(op, channels, k, stride)
