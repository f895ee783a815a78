"""Candidate operations, the op registry and mixed ops."""

from dnas.ops import conv1d as _conv1d  # noqa: F401  (registers the 1-D conv ops)
from dnas.ops import darts as _darts  # noqa: F401  (registers the DARTS ops)
from dnas.ops import fbnet as _fbnet  # noqa: F401  (registers the FBNet blocks)
from dnas.ops import nb201 as _nb201  # noqa: F401  (registers the NAS-Bench-201 convs)
from dnas.ops import tabular as _tabular  # noqa: F401  (registers the tabular ops)
from dnas.ops.darts import DARTS_PRIMITIVES, PARAMETER_FREE_OPS, DilConv, FactorizedReduce, ReLUConvBN, SepConv, Zero
from dnas.ops.fused import FUSED_POLICIES, FusedMixedFunction, fused_mixed_op
from dnas.ops.gumbel import GumbelSampler, gumbel_softmax
from dnas.ops.mixed import MIXED_OP_IMPLS, MixedOp, set_sampled_execution
from dnas.ops.registry import UnknownOpError, build_op, get_op, is_registered, register_op, registered_ops

__all__ = [
    "DARTS_PRIMITIVES",
    "FUSED_POLICIES",
    "MIXED_OP_IMPLS",
    "PARAMETER_FREE_OPS",
    "DilConv",
    "FactorizedReduce",
    "FusedMixedFunction",
    "GumbelSampler",
    "MixedOp",
    "ReLUConvBN",
    "SepConv",
    "UnknownOpError",
    "Zero",
    "build_op",
    "fused_mixed_op",
    "get_op",
    "gumbel_softmax",
    "is_registered",
    "register_op",
    "registered_ops",
    "set_sampled_execution",
]
