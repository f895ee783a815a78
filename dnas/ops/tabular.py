"""Candidate ops for tabular spaces (``(B, C)`` feature vectors).

``linear`` (ReLU -> Linear -> BN), ``mlp`` (ReLU -> Linear to 2C -> ReLU -> Linear -> BN), ``layer_norm`` (a
normalisation as an op of its own). ``none`` and ``skip_connect`` are the generic ops. Tables have no spatial axis,
so every op here requires stride 1.
"""

from __future__ import annotations

from torch import nn

from dnas.ops.registry import SequentialOp, register_op

TABULAR_PRIMITIVES: tuple[str, ...] = ("none", "skip_connect", "linear", "mlp", "layer_norm")
"""Candidates of the shipped tabular space."""


def _check(name: str, C_in: int, C_out: int, stride: int, same: bool = False) -> None:
    if stride != 1:
        raise ValueError(f"tabular op {name!r} has no spatial axis to stride; got stride={stride}")
    if same and C_in != C_out:
        raise ValueError(f"op {name!r} keeps the feature count; got C_in={C_in}, C_out={C_out}")


class LinearBN(SequentialOp):
    """ReLU -> Linear (no bias: BN follows) -> BatchNorm1d; ``hidden`` set makes it a two-layer MLP."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True, hidden: int | None = None):
        super().__init__()
        layers: list[nn.Module] = [nn.ReLU(inplace=False)]
        if hidden is not None:
            layers += [nn.Linear(C_in, hidden), nn.ReLU(inplace=False)]
            C_in = hidden
        layers += [nn.Linear(C_in, C_out, bias=False), nn.BatchNorm1d(C_out, affine=affine)]
        self.op = nn.Sequential(*layers)


@register_op("linear")
def _linear(C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
    _check("linear", C_in, C_out, stride)
    return LinearBN(C_in, C_out, affine)


@register_op("mlp")
def _mlp(C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
    _check("mlp", C_in, C_out, stride)
    return LinearBN(C_in, C_out, affine, hidden=2 * C_out)


@register_op("layer_norm")
def _layer_norm(C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
    _check("layer_norm", C_in, C_out, stride, same=True)
    return nn.LayerNorm(C_out, elementwise_affine=affine)
