"""Where every candidate op of a supernet runs, and at which input shape: found with hooks during one forward.

Works for any :class:`~dnas.cells.Supernet` whose edges are :class:`~dnas.ops.MixedOp` modules called as
``op(x, weights[group][edge])`` (DARTS, PC-DARTS' wrapped edges, NAS-Bench-201, FBNet chains, user cells built on
:class:`~dnas.cells.DagCell`). The probe forward passes each group's weights as one contiguous ``(E, K)`` tensor, so
the row a mixed op receives is recognised by its memory address: no space needs to declare its edge layout.

An ``(group, edge)`` can own several mixed-op *instances* (DARTS shares ``normal`` weights across all normal cells,
each cell with its own ops and shapes); each instance is a :class:`Site`, and a cost table sums its instances.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dnas.cells.base import Supernet
from dnas.ops.mixed import MixedOp


@dataclass(frozen=True)
class Site:
    """One mixed-op instance: its module path, the α row it reads, its candidate names and its input shape."""

    module: str
    group: str
    edge: int
    ops: tuple[str, ...]
    input_shape: tuple[int, ...]


def candidate_sites(supernet: Supernet, example_input: torch.Tensor) -> list[Site]:
    """Run one forward of ``supernet`` on ``example_input`` and return every mixed op it called, in call order.

    Raises:
        RuntimeError: a mixed op received weights that are not a row of the probe weights (a space that transforms
            its weights before indexing them), or no mixed op ran.
    """
    names = {m: n for n, m in supernet.named_modules()}
    weights = {  # uniform, each group a fresh contiguous tensor: its rows identify the edges
        g: torch.full((grp.num_edges, len(grp.candidates)), 1.0 / len(grp.candidates)).to(example_input)
        for g, grp in supernet.arch_groups.items()
    }
    rows: dict[int, tuple[str, int]] = {}
    for group, w in weights.items():
        for i in range(w.shape[0]):
            rows[w[i].data_ptr()] = (group, i)
    sites: list[Site] = []
    seen: set[str] = set()

    def hook(module: nn.Module, args) -> None:
        x, w = args[0], args[1]
        name = names.get(module, "?")
        if name in seen:
            return
        key = rows.get(w.data_ptr()) if isinstance(w, torch.Tensor) and w.dim() == 1 else None
        if key is None:
            raise RuntimeError(
                f"mixed op {name!r} received weights that are not a row of the group weights; "
                "cost tables need edges called as op(x, weights[group][edge])"
            )
        seen.add(name)
        sites.append(Site(name, key[0], key[1], tuple(module.primitives), tuple(x.shape)))

    handles = [m.register_forward_pre_hook(hook) for m in supernet.modules() if isinstance(m, MixedOp)]
    was_training = supernet.training
    try:
        supernet.eval()
        with torch.no_grad():
            supernet(example_input, weights)
    finally:
        supernet.train(was_training)
        for h in handles:
            h.remove()
    if not sites:
        raise RuntimeError(f"{type(supernet).__name__} ran no dnas.ops.MixedOp edge; nothing to put in a cost table")
    return sites


def candidate_shapes(supernet: Supernet, example_input: torch.Tensor) -> dict[tuple[str, int], list[tuple[int, ...]]]:
    """``(group, edge) -> [input shape of each mixed-op instance]`` for one forward on ``example_input``."""
    out: dict[tuple[str, int], list[tuple[int, ...]]] = {}
    for site in candidate_sites(supernet, example_input):
        out.setdefault((site.group, site.edge), []).append(site.input_shape)
    return out
