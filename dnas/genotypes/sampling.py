"""Random genotypes of a space, drawn under its rules: the baseline a search has to beat.

Random search with the same evaluation recipe is the baseline differentiable NAS is measured against (Li & Talwalkar,
"Random Search and Reproducibility for NAS", UAI 2019; Yang et al., "NAS evaluation is frustratingly hard", ICLR
2020): every cell a random draw could be, the search could have returned. :func:`random_genotype` draws from a
:class:`~dnas.genotypes.SpaceSpec`:

* ``all_edges`` cells (NAS-Bench-201, FBNet's chain): one uniformly drawn op on every edge the spec requires;
* ``edges_per_node = k`` cells (DARTS): per intermediate node ``k`` distinct earlier nodes, uniformly, each with a
  uniformly drawn op;
* cells whose spec fixes neither (a user's cell with a sparse edge list): the edges of ``template`` (the found
  genotype) with new ops, or, without a template, a non-empty random set of incoming edges per node.

Ops the space's rule never picks (``none`` under the DARTS rule) are left out with ``exclude``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from dnas.genotypes.build import BUILD_KEY
from dnas.genotypes.core import CellGenotype, Edge, Genotype
from dnas.genotypes.spec import CellSpec, GenotypeError, SpaceSpec, dense_edges


def rule_exclude(cell: CellSpec) -> tuple[str, ...]:
    """Ops a built-in rule never picks: ``none`` in cells with a fixed in-degree (the DARTS top-k rule), else none."""
    return ("none",) if cell.edges_per_node is not None and len(cell.ops) > 1 else ()


def _cell(
    name: str, cs: CellSpec, rng: random.Random, exclude: Sequence[str], template: CellGenotype | None
) -> CellGenotype:
    ops = [op for op in cs.ops if op not in exclude]
    if not ops:
        raise GenotypeError(f"cell {name!r}: every op of the space is excluded ({list(exclude)}); nothing to draw")
    nodes = cs.nodes
    if cs.all_edges:
        pairs = dense_edges(cs.num_inputs, cs.num_nodes, cs.chain)
    elif cs.edges_per_node is not None:
        k = cs.edges_per_node
        if any(d < k for d in nodes):
            raise GenotypeError(f"cell {name!r}: a node has fewer than {k} earlier nodes; no genotype fits the spec")
        pairs = [(s, d) for d in nodes for s in sorted(rng.sample(range(d), k))]
    elif template is not None:
        pairs = [(e.src, e.dst) for e in template.edges]
    else:
        pairs = []
        for d in nodes:
            srcs = [s for s in range(d) if rng.random() < 0.5] or [rng.randrange(d)]
            pairs += [(s, d) for s in srcs]
    edges = tuple(Edge(rng.choice(ops), s, d) for s, d in pairs)
    if template is not None:
        concat = template.concat
    elif cs.all_edges or cs.chain:
        concat = (nodes.stop - 1,)
    else:
        concat = tuple(nodes)
    return CellGenotype(edges, tuple(concat))


def random_genotype(
    spec: SpaceSpec,
    rng: random.Random | int,
    template: Genotype | None = None,
    exclude: Sequence[str] | None = None,
) -> Genotype:
    """A random genotype of ``spec``, valid under its rules (see the module docstring).

    Args:
        spec: the space's rules.
        rng: a :class:`random.Random` (advanced) or a seed.
        template: a genotype of the same space whose edge lists (cells with neither ``all_edges`` nor
            ``edges_per_node``), ``concat`` and ``meta["build"]`` the draw keeps.
        exclude: ops never drawn; None = :func:`rule_exclude` per cell.

    Raises:
        GenotypeError: the template is of another space, or the spec leaves nothing to draw.
    """
    if template is not None and template.space != spec.name:
        raise GenotypeError(f"template genotype is of space {template.space!r}, the spec is {spec.name!r}")
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    cells = {}
    for name, cs in spec.cells.items():
        tcell = template.cells.get(name) if template is not None else None
        cells[name] = _cell(name, cs, rng, rule_exclude(cs) if exclude is None else exclude, tcell)
    meta = {BUILD_KEY: template.meta[BUILD_KEY]} if template is not None and BUILD_KEY in template.meta else {}
    return Genotype(spec.name, cells, {**meta, "source": "random"}).validate(spec, source="random genotype")
