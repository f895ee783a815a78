"""DARTS-PT's op and topology projection: one selection decision on a supernet, measured by masking.

From Wang et al., "Rethinking Architecture Selection in Differentiable NAS", ICLR 2021 (reference code
``ruocwang/darts-pt``). Instead of reading the architecture off the largest α, a decision measures
how much the trained supernet *needs* each op (or edge) by masking it:

1. **op projection**: pick an undecided edge (random or fixed order), mask each candidate op in turn (its weight set to
   0, the others keep their weights: no renormalisation), keep the op whose removal gives the lowest accuracy (highest
   loss); ties go to the lowest op index, as the reference. The edge is then fixed to that op (one-hot weights).
2. **topology projection** (spaces whose genotype rule keeps ``edges_per_node`` inputs per node, i.e. DARTS' "2 inputs
   per node"): for one node with more incoming edges, repeatedly remove the edge whose removal hurts least (highest
   accuracy, ties to the later edge, as the reference) until ``edges_per_node`` remain.

The functions take any :data:`Evaluate` (``() -> (accuracy, mean loss)``), such as
:class:`dnas.callbacks.evaluation.SupernetEvaluator`; which edge is decided when, and the fine-tuning between decisions,
are :class:`dnas.callbacks.perturbation.PerturbationSelection`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from dnas.cells.base import Supernet

Evaluate = Callable[[], tuple[float, float]]
"""A measurement: ``() -> (accuracy, mean loss)`` of the supernet as it is right now."""


# ---------------------------------------------------------------------------------------------------------- plan
def topology_k(supernet: Supernet, group: str) -> int | None:
    """Inputs kept per node by the space's genotype rule (``edges_per_node``), or None when there is no such rule."""
    spec = supernet.space_spec.cells.get(group)
    if spec is None or spec.all_edges or spec.chain:
        return None
    return spec.edges_per_node


def topology_nodes(supernet: Supernet, group: str) -> list[int]:
    """Nodes of ``group`` with more incoming edges than the rule keeps (the nodes topology projection decides)."""
    k = topology_k(supernet, group)
    if k is None:
        return []
    edges = supernet.arch_groups[group].edges
    return [n for n in sorted({d for _, d in edges}) if sum(1 for _, d in edges if d == n) > k]


def num_decisions(supernet: Supernet) -> int:
    """Decision steps of a full selection: one edge per group per op step, one node per group per topology step."""
    ops = max((supernet.arch_groups[g].num_edges for g in supernet.arch_groups), default=0)
    topo = max((len(topology_nodes(supernet, g)) for g in supernet.arch_groups), default=0)
    return ops + topo


def _goodness(score: tuple[float, float], crit: str) -> float:
    """Higher = the supernet works better: accuracy, or minus the loss."""
    return score[0] if crit == "acc" else -score[1]


# ---------------------------------------------------------------------------------------------------------- steps
def project_op(
    supernet: Supernet,
    group: str,
    edge: int,
    evaluate: Evaluate,
    crit: Literal["acc", "loss"] = "acc",
    exclude: Iterable[str] = (),
) -> dict[str, Any]:
    """One op decision: mask each candidate of ``edge`` in turn, fix the edge to the op whose removal hurts most.

    Ties go to the lowest op index (strict comparison in candidate order, as ``ruocwang/darts-pt``). Ops in
    ``exclude`` (and ops already masked out) are neither measured nor chosen.

    Returns:
        The decision record: group, edge, its ``(src, dst)``, base score, per-candidate scores, and the choice.
    """
    info = supernet.arch_groups[group]
    excluded = set(exclude)
    candidates = [j for j, name in enumerate(info.candidates) if name not in excluded and info.is_available(edge, j)]
    if not candidates:
        raise ValueError(
            f"edge {edge} of group {group!r} has no candidate left to choose from "
            f"(candidates {list(info.candidates)}, excluded {sorted(excluded)})"
        )
    base = evaluate()
    scores: dict[str, dict[str, float]] = {}
    best_j, best = candidates[0], None
    for j in candidates:
        with supernet.masked(group, edge, j):
            score = evaluate()
        scores[info.candidates[j]] = {"acc": score[0], "loss": score[1]}
        if best is None or _goodness(score, crit) < best:  # strict: ties keep the lower op index
            best_j, best = j, _goodness(score, crit)
    supernet.fix_edge(group, edge, best_j)
    src, dst = info.edges[edge]
    return {
        "kind": "op",
        "group": group,
        "edge": edge,
        "src": src,
        "dst": dst,
        "crit": crit,
        "base": {"acc": base[0], "loss": base[1]},
        "scores": scores,
        "choice": info.candidates[best_j],
    }


def project_topology(
    supernet: Supernet, group: str, node: int, k: int, evaluate: Evaluate, crit: Literal["acc", "loss"] = "acc"
) -> dict[str, Any]:
    """One topology decision: drop the incoming edges of ``node`` whose removal hurts least until ``k`` remain.

    Each round masks every remaining incoming edge in turn (whole weight row zeroed) and removes the one with the
    highest accuracy (lowest loss) when removed; ties go to the later edge, as the reference.

    Returns:
        The decision record: group, node, one entry per round (remaining edges, scores, removed edge), kept edges.
    """
    info = supernet.arch_groups[group]
    removed = set(supernet.removed_edges(group))
    live = [i for i, (_, d) in enumerate(info.edges) if d == node and i not in removed]
    rounds = []
    while len(live) > k:
        scores: dict[int, dict[str, float]] = {}
        drop, best = live[0], None
        for i in live:
            with supernet.masked(group, i):
                score = evaluate()
            scores[i] = {"acc": score[0], "loss": score[1]}
            if best is None or _goodness(score, crit) >= best:  # ties -> the later edge
                drop, best = i, _goodness(score, crit)
        supernet.remove_edge(group, drop)
        rounds.append({"live": list(live), "scores": {str(i): s for i, s in scores.items()}, "removed": drop})
        live.remove(drop)
    kept = [{"edge": i, "src": info.edges[i][0], "dst": node} for i in live]
    return {"kind": "topology", "group": group, "node": node, "crit": crit, "rounds": rounds, "kept": kept}
