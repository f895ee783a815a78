"""Hard cost budgets: a Lagrange multiplier during the search, and a projection of the final genotype under budget.

**Search** (:class:`BudgetLoss`): the architecture step minimises the task loss subject to ``cost ≤ B``, where ``cost``
is the expected table cost of the edge weights the forward used (:meth:`LatencyLoss.expected`), through the
Lagrangian ``ce + λ · (cost / B − 1)``. After each architecture loss, projected dual ascent (Boyd & Vandenberghe,
*Convex Optimization*, §5; used for resource constraints in NAS e.g. by TuNAS, Bender et al. 2020, and "Constrained
DNAS" variants) raises the multiplier while the cost is over budget and lowers it, never below 0, while under:
``λ ← max(0, λ + η · (cost / B − 1))``; the violation is averaged over DDP ranks. λ is a buffer of the loss module,
so checkpoints carry it; ``arch/multiplier`` and ``arch/violation`` are logged every step.

**Final genotype** (:meth:`BudgetLoss.project`, :func:`project_to_budget`): the space's genotype is priced by the
table (each kept edge costs its α row's table entry for the chosen op). While it costs more than ``B``, the single
op swap on one kept edge with the least *probability lost per unit of cost saved*,
``(p[e, current] − p[e, new]) / (T[e, current] − T[e, new])`` (``p`` = the space's selection weights, softmax α), is
made. Every over-budget genotype with a cheaper op left on some edge has such a swap, so the greedy loop ends within
budget whenever the cheapest choice on the kept edges is (otherwise it raises, naming that cost). The edges a space's
rule keeps (DARTS' top 2 per node) are not changed. The swaps, the cost before and after and the budget go to the
genotype's ``meta["budget"]`` (``genotype.json``, the export's ``summary.json``, the search report).

**What is budgeted: the table sum.** ``B`` bounds the sum of the table entries of the chosen ops, the quantity the
expected cost is linear in and the projection can guarantee exactly. It is not the whole network's latency: stem, head
and framework overhead are outside the table. A table calibrated by ``dnas lut --calibrate N``
(:mod:`dnas.latency.calibration`) predicts the whole network as ``intercept + slope · sum`` with a measured error
band; the search report and ``dnas export --table`` print that prediction next to ``B`` and, for a whole-network
target ``T``, the table-sum budget to ask for is ``(T − intercept) / slope`` (slope > 0). The budget stays on the
table sum because only that is exact: the prediction carries an empirical error band, so a whole-network budget
converted through it would hold only within that band, on this device and load.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dnas.cells.base import Supernet
from dnas.errors import ConfigError
from dnas.genotypes import CellGenotype, Edge, Genotype
from dnas.latency.loss import LatencyLoss

Choice = tuple[str, int, int]
"""``(group, α row, candidate index)`` of one kept edge."""


def project_to_budget(
    choice: Sequence[Choice],
    probs: Mapping[str, torch.Tensor],
    costs: Mapping[str, torch.Tensor],
    budget: float,
    allowed: Mapping[str, Sequence[bool]] | None = None,
) -> tuple[list[Choice], list[dict[str, Any]]]:
    """Greedy swaps bringing ``Σ costs[g][row, k]`` over ``choice`` (the table sum) to at most ``budget``.

    Args:
        choice: the kept edges and their ops.
        probs: per group, ``(E, K)`` selection probabilities.
        costs: per group, ``(E, K)`` table costs.
        budget: the bound.
        allowed: per group, which candidates a swap may choose (default: all).

    Returns:
        ``(new choice, swaps)``; each swap is ``{"group", "row", "from", "to", "cost_saved", "prob_lost"}`` (indices).

    Raises:
        ConfigError: even the cheapest allowed op on every kept edge costs more than ``budget``.
    """
    current = list(choice)
    groups = {g for g, _, _ in current}
    costs = {g: costs[g].double().cpu() for g in groups}
    probs = {g: probs[g].double().cpu() for g in groups}

    def ok(g: str, k: int) -> bool:
        return allowed is None or bool(allowed[g][k])

    def total() -> float:
        return math.fsum(float(costs[g][r, k]) for g, r, k in current)

    swaps: list[dict[str, Any]] = []
    while total() > budget:
        best: tuple[float, float, int, int] | None = None  # (score, -saving, position, new k)
        for pos, (g, r, k) in enumerate(current):
            for j in range(costs[g].shape[1]):
                saved = float(costs[g][r, k] - costs[g][r, j])
                if j == k or saved <= 0 or not ok(g, j):
                    continue
                key = (float(probs[g][r, k] - probs[g][r, j]) / saved, -saved, pos, j)
                if best is None or key < best:
                    best = key
        if best is None:
            cheapest = math.fsum(
                min(float(costs[g][r, j]) for j in range(costs[g].shape[1]) if ok(g, j) or j == k)
                for g, r, k in current
            )
            raise ConfigError(
                f"cost budget {budget:.6g} is below the cheapest architecture on the kept edges ({cheapest:.6g} by "
                "the table); raise the budget"
            )
        _, neg_saved, pos, j = best
        g, r, k = current[pos]
        lost = float(probs[g][r, k] - probs[g][r, j])
        swaps.append({"group": g, "row": r, "from": k, "to": j, "cost_saved": -neg_saved, "prob_lost": lost})
        current[pos] = (g, r, j)
    return current, swaps


class BudgetLoss(nn.Module, LatencyLoss):
    """A hard budget on the table cost: the Lagrangian ``ce + λ · (cost / B − 1)`` with λ by dual ascent.

    A :class:`~dnas.latency.LatencyLoss` (``latency_loss`` of every search module takes it) and an ``nn.Module`` (so
    the multiplier buffer is in the search module's state dict, checkpoints and DDP buffer broadcasts).

    Args:
        table: cost table path (read on first use) or a :class:`~dnas.latency.table.CostTable`; its metric is the
            budget's (``latency`` in ms, ``flops``, ``params``).
        budget: the bound B on the table sum of the chosen ops, in the table's unit (not the whole network's
            latency; see the module docstring for converting a whole-network target through the calibration).
        dual_lr: η, the dual ascent step per architecture step (on the relative violation ``cost / B − 1``).
        multiplier: λ at the start (≥ 0).
        exclude_ops: candidates the final projection never swaps in (e.g. ``["none"]`` for DARTS-rule spaces).
        check_shapes: as :class:`~dnas.latency.LatencyLoss`.
    """

    def __init__(
        self,
        table: str | Path,
        budget: float,
        dual_lr: float = 0.1,
        multiplier: float = 0.0,
        exclude_ops: Sequence[str] = (),
        check_shapes: bool = True,
    ):
        nn.Module.__init__(self)
        if not (math.isfinite(budget) and budget > 0):
            raise ConfigError(f"BudgetLoss: budget must be a positive number in the table's unit, got {budget}")
        if dual_lr < 0 or multiplier < 0:
            raise ConfigError(f"BudgetLoss: dual_lr and multiplier must be >= 0, got {dual_lr} and {multiplier}")
        LatencyLoss.__init__(self, table, form="add", target=budget, lam=0.0, check_shapes=check_shapes)
        self.budget, self.dual_lr, self.exclude_ops = float(budget), float(dual_lr), tuple(exclude_ops)
        self.register_buffer("multiplier", torch.tensor(float(multiplier), dtype=torch.float64))

    def bind(self, supernet: Supernet) -> None:
        """Fold the table for ``supernet`` (as :class:`~dnas.latency.LatencyLoss`).

        The first time, also check that the budget is feasible for the current genotype's edges, so a budget below
        the cheapest network fails at the first step, not at the end of the search.
        """
        first = self._bound != id(supernet)
        super().bind(supernet)
        if first:
            self.project(supernet.genotype(), supernet)

    def combine(self, ce: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        """The Lagrangian ``ce + λ · (cost / B − 1)`` at the current λ."""
        return ce + self.multiplier.to(ce.dtype) * (cost / self.budget - 1)

    @torch.no_grad()
    def dual_step(self, cost: torch.Tensor) -> torch.Tensor:
        """``λ ← max(0, λ + η · (cost / B − 1))`` (violation averaged over DDP ranks); returns the violation."""
        violation = (cost.detach().double() / self.budget - 1).reshape(1).to(self.multiplier.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(violation, op=torch.distributed.ReduceOp.SUM)
            violation /= torch.distributed.get_world_size()
        self.multiplier.add_(self.dual_lr * violation[0]).clamp_(min=0.0)
        return violation[0]

    def forward(
        self, ce: torch.Tensor, supernet: Supernet, weights: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, logs)`` at the current λ, then one dual ascent step when the cost has a gradient (a search step)."""
        cost = self.expected(supernet, weights)
        loss = self.combine(ce, cost)
        logs = {self.name: cost.detach(), "ce": ce.detach(), "multiplier": self.multiplier.detach().clone()}
        if cost.requires_grad:
            logs["violation"] = self.dual_step(cost)
        return loss, logs

    # ------------------------------------------------------------------ final genotype
    def project(self, genotype: Genotype, supernet: Supernet) -> Genotype:
        """``genotype`` within budget by the table (module docstring); ``meta["budget"]`` records the outcome."""
        self.bind(supernet)
        probs = supernet.selection_weights()
        choice: list[Choice] = []
        for g, cell in genotype.cells.items():
            group = supernet.arch_groups[g]
            rows = {e: i for i, e in enumerate(group.edges)}
            for edge in cell.edges:
                choice.append((g, rows[(edge.src, edge.dst)], group.candidates.index(edge.op)))
        allowed = {g: [c not in self.exclude_ops for c in grp.candidates] for g, grp in supernet.arch_groups.items()}
        before = math.fsum(float(self._matrices[g][r, k]) for g, r, k in choice)
        new, swaps = project_to_budget(choice, probs, self._matrices, self.budget, allowed)
        after = math.fsum(float(self._matrices[g][r, k]) for g, r, k in new)
        cells = dict(genotype.cells)
        for g, cell in genotype.cells.items():
            ops = [supernet.arch_groups[g].candidates[k] for gg, _, k in new if gg == g]
            cells[g] = CellGenotype(tuple(Edge(op, e.src, e.dst) for op, e in zip(ops, cell.edges)), cell.concat)
        named = []
        for s in swaps:
            group = supernet.arch_groups[s["group"]]
            src, dst = group.edges[s["row"]]
            named.append(
                {
                    "group": s["group"],
                    "edge": [src, dst],
                    "from": group.candidates[s["from"]],
                    "to": group.candidates[s["to"]],
                    "cost_saved": s["cost_saved"],
                    "prob_lost": s["prob_lost"],
                }
            )
        record = {
            "metric": self.name,
            "unit": self.table.unit,
            "budget": self.budget,
            "cost_before": before,
            "cost": after,
            "multiplier": float(self.multiplier),
            "swaps": named,
        }
        return Genotype(genotype.space, cells, {**genotype.meta, "budget": record})

    def extra_repr(self) -> str:
        return f"metric={self.name!r}, budget={self.budget:g}, dual_lr={self.dual_lr:g}"


def describe(record: Mapping[str, Any]) -> str:
    """One line for logs and reports from a genotype's ``meta["budget"]``."""
    swaps = ", ".join(f"{'->'.join(map(str, s['edge']))}: {s['from']} -> {s['to']}" for s in record["swaps"])
    return (
        f"table {record['metric']} {record['cost']:.6g} {record['unit']} vs budget {record['budget']:.6g} "
        f"(argmax {record['cost_before']:.6g}; {len(record['swaps'])} swap(s){': ' + swaps if swaps else ''})"
    )
