"""Space specs: what each search space allows in a genotype, registered by name.

Spaces register theirs with :func:`register_space`, so that :meth:`Genotype.from_json
<dnas.genotypes.Genotype.from_json>` checks a file against the space it names. ``import dnas`` registers every
built-in space (:mod:`dnas.spaces`), so validation never depends on what was imported before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from dnas.safe_read import short


class GenotypeError(ValueError):
    """A genotype (or genotype file) that does not fit its space; the message names the field and allowed values."""


@dataclass(frozen=True)
class CellSpec:
    """What one cell type of a space allows.

    Args:
        ops: the candidate op names.
        num_inputs: cell input nodes (numbered from 0).
        num_nodes: intermediate nodes (numbered after the inputs).
        edges_per_node: exact in-degree of every intermediate node in a genotype, or None for "any, at least 1".
        all_edges: when true, every (src, dst) pair with src < dst must appear exactly once (NAS-Bench-201, chains).
        chain: edges only go from node l to l+1.
        any_registered_op: also allow every op of the op registry (:func:`dnas.ops.register_op`), for a space whose
            discrete network builds any registered op (DARTS); ``ops`` then lists the space's standard ones.
    """

    ops: tuple[str, ...]
    num_inputs: int
    num_nodes: int
    edges_per_node: int | None = None
    all_edges: bool = False
    chain: bool = False
    any_registered_op: bool = False

    @property
    def nodes(self) -> range:
        """The intermediate nodes."""
        return range(self.num_inputs, self.num_inputs + self.num_nodes)


def dense_edges(num_inputs: int, num_nodes: int, chain: bool = False) -> tuple[tuple[int, int], ...]:
    """Each ``(src, dst)``, ``src < dst`` (a chain: ``src = dst - 1``), per intermediate node, in α row order."""
    return tuple((s, d) for d in range(num_inputs, num_inputs + num_nodes) for s in range(d) if not chain or s == d - 1)


@dataclass(frozen=True)
class SpaceSpec:
    """A search space's genotype rules: one :class:`CellSpec` per cell type."""

    name: str
    cells: Mapping[str, CellSpec]


_SPACES: dict[str, SpaceSpec] = {}
_BUILTIN: dict[str, SpaceSpec] = {}


def register_space(spec: SpaceSpec, *, overwrite: bool = True, builtin: bool = False) -> SpaceSpec:
    """Make ``spec`` known by name so genotype files naming it are validated against it.

    Args:
        spec: the space's rules.
        overwrite: replace a spec registered under the same name (else raise ``ValueError``).
        builtin: mark the spec as a built-in space's (:mod:`dnas.spaces`). A built-in space can later be re-registered
            only with more ops, never with other cells or nodes, so what a genotype file of a built-in space must look
            like does not depend on what ran before (no dnas code re-registers one).

    Raises:
        ValueError: the name is taken and ``overwrite`` is false, or ``spec`` changes a built-in space's structure.
    """
    if spec.name in _SPACES and not overwrite:
        raise ValueError(f"space {spec.name!r} is already registered")
    base = _BUILTIN.get(spec.name)
    if base is not None and not _widens(base, spec):
        raise ValueError(
            f"space {spec.name!r} is built in; a spec with other cells, nodes or edge rules (or fewer ops) needs its "
            f"own name, e.g. {spec.name + '_custom'!r}"
        )
    _SPACES[spec.name] = spec
    if builtin:
        _BUILTIN[spec.name] = spec
    return spec


def _widens(base: SpaceSpec, spec: SpaceSpec) -> bool:
    """True when ``spec`` is ``base`` with the same cells and rules and a superset of its ops."""
    if set(base.cells) != set(spec.cells):
        return False
    return all(
        replace(spec.cells[name], ops=old.ops, any_registered_op=old.any_registered_op) == old
        and set(old.ops) <= set(spec.cells[name].ops)
        for name, old in base.cells.items()
    )


def get_space_spec(name: str) -> SpaceSpec | None:
    return _SPACES.get(name)


def registered_spaces() -> list[str]:
    return sorted(_SPACES)


def require_space_spec(space: str, source: str = "genotype") -> SpaceSpec:
    """The registered spec of ``space``, or a :class:`GenotypeError` naming the known spaces and the fix."""
    spec = _SPACES.get(space)
    if spec is None:
        raise GenotypeError(
            f"{source}: unknown space {short(space)}; known: {registered_spaces()}; import the module that defines it"
        )
    return spec
