"""The op registry: candidate operations by name.

Genotypes store op *names*; the registry turns a name back into a module. Every factory has the signature
``factory(C_in, C_out, stride, affine) -> nn.Module`` whatever the domain (2-D, 1-D, tabular, MBConv blocks), so a
search space only has to list names, and a user's op is one :func:`register_op` call away.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

OpFactory = Callable[[int, int, int, bool], nn.Module]

_OPS: dict[str, OpFactory] = {}


class SequentialOp(nn.Module):
    """Base of the ops whose forward is exactly their ``op`` layers (module names mirror the reference code)."""

    op: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class UnknownOpError(KeyError):
    """An op name that is not in the registry (or not in a space's candidate list)."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_op(name: str, factory: OpFactory | None = None, *, overwrite: bool = False):
    """Register ``factory`` under ``name``; usable as a decorator.

    Args:
        name: the name genotypes and candidate lists use.
        factory: ``(C_in, C_out, stride, affine) -> nn.Module``.
        overwrite: replace an existing entry instead of raising.
    """

    def _register(fn: OpFactory) -> OpFactory:
        if not isinstance(name, str) or not name:
            raise ValueError(f"op name must be a non-empty string, got {name!r}")
        if name in _OPS and not overwrite and _OPS[name] is not fn:
            raise ValueError(f"op {name!r} is already registered; pass overwrite=True to replace it")
        _OPS[name] = fn
        return fn

    return _register(factory) if factory is not None else _register


def get_op(name: str) -> OpFactory:
    """Return the factory registered under ``name``, or raise :class:`UnknownOpError` listing the known names."""
    try:
        return _OPS[name]
    except (KeyError, TypeError):
        raise UnknownOpError(f"unknown op {name!r}; registered ops: {sorted(_OPS)}") from None


def build_op(name: str, C_in: int, C_out: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """Instantiate the op ``name``."""
    return get_op(name)(C_in, C_out, stride, affine)


def is_registered(name: str) -> bool:
    return name in _OPS


def registered_ops() -> Iterator[str]:
    return iter(sorted(_OPS))
