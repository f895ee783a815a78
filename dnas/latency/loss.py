"""The expected-cost term and the loss forms that combine it with the task loss (FBNet, Wu et al. 2019; ProxylessNAS).

Expected cost ``LAT(w) = Σ_groups Σ_edges Σ_k w[e, k] · T[e, k]``, where ``w`` are the edge weights the forward
used (softmax for DARTS/PC-DARTS/SD-DARTS, the Gumbel mask for FBNet) and ``T`` the table folded per α row
(:meth:`~dnas.latency.table.CostTable.matrix`). It is linear in ``w``, hence differentiable in α.

Forms (``ce`` = the task loss):

* ``"fbnet"``: ``ce · α · log(s·LAT)^β`` (FBNet, α = 0.2, β = 0.6; the paper's latency is in ms, so ``s·LAT``
  must stay above 1 for the log to be positive: use ``scale`` to change the unit, e.g. 1000 for µs).
* ``"mul_log"``: ``α · ce · (log(s·LAT) / log(s·reference))^β`` (ProxylessNAS ``mul#log``; its paper uses
  α = 0.2, β = 0.3, reference 80 ms on mobile).
* ``"add"``: ``ce + λ · LAT / target``.

A FLOPs or parameter table (``dnas lut --metric flops``) works the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch

from dnas.cells.base import Supernet
from dnas.latency.table import CostTable, CostTableError

FORMS = ("fbnet", "mul_log", "add")


class LatencyLoss:
    """A cost term read from a table, combined with the task loss by a named form.

    Args:
        table: path of a cost table JSON (``dnas lut`` writes one), read when the term is first used (so
            ``dnas lut`` can build the same config before the file exists); a :class:`CostTable` works from Python.
        form: ``"fbnet"``, ``"mul_log"`` or ``"add"`` (module docstring).
        alpha: α of the multiplicative forms (FBNet: 0.2).
        beta: β of the multiplicative forms (FBNet: 0.6; ProxylessNAS: 0.3).
        reference: reference cost of ``"mul_log"`` in the table unit (ProxylessNAS: 80 ms).
        target: target cost of ``"add"`` in the table unit.
        lam: λ of ``"add"``.
        scale: multiplies the cost before the log forms (unit change).
        check_shapes: on binding (one probe forward at the table's input shape), also check every entry's input
            shape against the supernet's; entries and ops are always checked.
    """

    def __init__(
        self,
        table: str | Path,
        form: Literal["fbnet", "mul_log", "add"] = "fbnet",
        alpha: float = 0.2,
        beta: float = 0.6,
        reference: float | None = None,
        target: float | None = None,
        lam: float = 0.1,
        scale: float = 1.0,
        check_shapes: bool = True,
    ):
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if form == "mul_log" and (reference is None or reference * scale <= 1):
            raise ValueError(f"form 'mul_log' needs reference·scale > 1 (a positive log), got {reference}·{scale}")
        if form == "add" and (target is None or target <= 0):
            raise ValueError(f"form 'add' needs a positive target, got {target}")
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self._table = table if isinstance(table, CostTable) else None
        self.path = None if isinstance(table, CostTable) else str(table)
        self.form, self.alpha, self.beta = form, alpha, beta
        self.reference, self.target, self.lam, self.scale = reference, target, lam, scale
        self.check_shapes = check_shapes
        self._matrices: dict[str, torch.Tensor] = {}
        self._bound: int | None = None

    @property
    def table(self) -> CostTable:
        """The cost table (loaded from ``path`` on first access)."""
        if self._table is None:
            self._table = CostTable.load(self.path)
        return self._table

    @property
    def name(self) -> str:
        """Log key: ``latency``, ``flops`` or ``params``."""
        return self.table.metric

    def bind(self, supernet: Supernet) -> None:
        """Fold the table into per-group ``(E, K)`` matrices for ``supernet`` (validating it once)."""
        if self._bound == id(supernet):
            return
        shape = self.table.meta.get("input_shape")
        required: dict[str, set[int]] | None = None
        if shape:  # one probe forward: which edges run (a group may have no instance) and at which shapes
            from dnas.latency.shapes import candidate_sites

            param = next(iter(supernet.parameters()))
            sites = candidate_sites(supernet, torch.zeros((1, *shape), device=param.device, dtype=param.dtype))
            self.table.validate(sites, check_shapes=self.check_shapes)
            required = {g: set() for g in supernet.arch_groups}
            for site in sites:
                required[site.group].add(site.edge)
        self._matrices = {
            g: self.table.matrix(g, grp.candidates, grp.num_edges, None if required is None else sorted(required[g]))
            for g, grp in supernet.arch_groups.items()
        }
        self._bound = id(supernet)

    def expected(self, supernet: Supernet, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``Σ w · T`` over every group (a differentiable scalar in the weights' dtype and device)."""
        self.bind(supernet)
        total = 0
        for g, w in weights.items():
            if g not in self._matrices:
                raise CostTableError(f"no cost matrix for group {g!r}; the table covers {sorted(self._matrices)}")
            table = self._matrices[g].to(device=w.device, dtype=w.dtype)
            total = total + (w * table).sum()
        return total

    def combine(self, ce: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        """The loss of the chosen form from the task loss and the expected cost."""
        if self.form == "add":
            return ce + self.lam * cost / self.target
        log_cost = torch.log(cost * self.scale)
        if float(log_cost.detach()) <= 0:
            raise ValueError(
                f"expected {self.name} {float(cost):.4g} {self.table.unit} gives log(scale·cost) <= 0 with scale="
                f"{self.scale}; the {self.form!r} form needs scale·cost > 1: raise `scale` (e.g. 1000 for µs)"
            )
        if self.form == "fbnet":
            return ce * self.alpha * log_cost**self.beta
        return self.alpha * ce * (log_cost / math.log(self.reference * self.scale)) ** self.beta

    def __call__(
        self, ce: torch.Tensor, supernet: Supernet, weights: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, logs)``; logs hold the expected cost and the task loss."""
        cost = self.expected(supernet, weights)
        return self.combine(ce, cost), {self.name: cost.detach(), "ce": ce.detach()}

    def __repr__(self) -> str:
        return f"LatencyLoss(metric={self.name!r}, form={self.form!r}, entries={len(self.table.entries)})"
