"""What a :class:`~dnas.cells.custom.CellSupernet` subclass declares, checked, registered and recorded.

A space declares class attributes (``space_name``, ``candidates``, the cell DAG, the genotype rule); these functions
read them from the class or an instance:

* :func:`check_declarations` — one clear error per bad declaration, at the first ``make_cell``;
* :func:`register_candidates` — ``(name, factory)`` candidates into the op registry, so genotypes stay plain JSON;
* :func:`space_spec_of` — the :class:`~dnas.genotypes.SpaceSpec` genotype files of the space are validated with;
* :func:`space_class` — the class that declared a space (where ``dnas.export.build_model`` finds the network);
* :func:`recording_init` — the constructor wrapper that records the JSON-able arguments as the build options.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dnas.cells.edges import check_edges
from dnas.genotypes.spec import CellSpec, SpaceSpec, dense_edges
from dnas.ops.registry import OpFactory, get_op, is_registered, register_op

if TYPE_CHECKING:
    from dnas.cells.custom import CellSupernet

GENOTYPE_RULES = ("argmax", "topk")

_SPACE_CLASSES: dict[str, type[CellSupernet]] = {}


def candidate_names(obj: Any) -> tuple[str, ...]:
    """The op names of ``obj.candidates`` (entries are names or ``(name, factory)`` pairs), in α column order."""
    return tuple(c if isinstance(c, str) else c[0] for c in obj.candidates)


def declared_edges(obj: Any) -> tuple[tuple[int, int], ...]:
    """``obj.edges`` as int pairs; :func:`dense_edges` when it is None."""
    edges = dense_edges(obj.num_inputs, obj.num_nodes) if obj.edges is None else obj.edges
    return tuple((int(s), int(d)) for s, d in edges)


def excluded_candidates(obj: Any) -> tuple[str, ...]:
    """Candidates the genotype rule never picks: ``genotype_exclude``, else ``"none"`` under the ``"topk"`` rule."""
    if obj.genotype_exclude is not None:
        return tuple(obj.genotype_exclude)
    return ("none",) if obj.genotype_rule == "topk" and "none" in candidate_names(obj) else ()


def check_declarations(obj: Any) -> None:
    """Raise one clear ``ValueError`` (or ``UnknownOpError``) for the first bad declaration of space ``obj``."""
    owner = type(obj).__name__
    names = candidate_names(obj)
    if not names:
        raise ValueError(f"{owner}: declare at least one candidate op in `candidates`")
    if len(set(names)) != len(names):
        raise ValueError(f"{owner}: candidate ops must be unique, got {list(names)}")
    for name in names:
        get_op(name)  # UnknownOpError naming the registered ops
    if obj.num_inputs < 1 or obj.num_nodes < 1:
        raise ValueError(f"{owner}: num_inputs and num_nodes must be >= 1")
    edges = declared_edges(obj)
    check_edges(edges, obj.num_inputs, obj.num_nodes)
    if len(set(edges)) != len(edges):
        raise ValueError(f"{owner}: edges contain a duplicate (src, dst): {list(edges)}")
    if obj.cell_output not in ("last", "sum", "concat"):
        raise ValueError(f"cell_output must be 'last', 'sum' or 'concat', got {obj.cell_output!r}")
    if obj.genotype_rule not in GENOTYPE_RULES:
        raise ValueError(f"genotype_rule must be one of {GENOTYPE_RULES}, got {obj.genotype_rule!r}")
    if not obj.cell_types or len(set(obj.cell_types)) != len(obj.cell_types):
        raise ValueError(f"cell_types must be non-empty and unique, got {list(obj.cell_types)}")
    exclude = excluded_candidates(obj)
    for name in exclude:
        if name not in names:
            raise ValueError(f"genotype_exclude names {name!r}, which is not a candidate; candidates: {list(names)}")
    if set(names) <= set(exclude):
        raise ValueError(f"genotype_exclude {list(exclude)} leaves no candidate for the rule to pick")


def register_candidates(owner: str, candidates: Sequence[Any]) -> list[str | tuple[str, OpFactory]]:
    """Register ``(name, factory)`` entries with the op registry; names stay as they are."""
    out: list[str | tuple[str, OpFactory]] = []
    for c in candidates:
        if isinstance(c, str):
            out.append(c)
            continue
        if not (isinstance(c, (tuple, list)) and len(c) == 2 and isinstance(c[0], str) and callable(c[1])):
            raise TypeError(f"{owner}.candidates entries must be op names or (name, factory) pairs, got {c!r}")
        # a class re-defined (notebook cell run twice, module reloaded) re-registers its own factory; a name taken by
        # any other factory is an error (the registry says which)
        taken = get_op(c[0]) if is_registered(c[0]) else None
        same_source = taken is not None and (
            getattr(taken, "__module__", None),
            getattr(taken, "__qualname__", None),
        ) == (getattr(c[1], "__module__", None), getattr(c[1], "__qualname__", None))
        register_op(c[0], c[1], overwrite=same_source)
        out.append((c[0], c[1]))
    return out


def space_spec_of(obj: Any) -> SpaceSpec:
    """The genotype rules of space ``obj`` (a class or an instance): its candidates, DAG and genotype rule."""
    names = candidate_names(obj)
    if not names:
        raise ValueError("no candidates declared")
    num_inputs, num_nodes = obj.num_inputs, obj.num_nodes
    edges = declared_edges(obj)
    dense = sorted(edges) == sorted(dense_edges(num_inputs, num_nodes))
    chain = num_inputs == 1 and sorted(edges) == list(dense_edges(1, num_nodes, chain=True))
    if obj.genotype_rule == "argmax":
        cell = CellSpec(names, num_inputs, num_nodes, all_edges=dense or chain, chain=chain and num_nodes > 1)
    else:
        fan_in = [sum(1 for _, d in edges if d == node) for node in range(num_inputs, num_inputs + num_nodes)]
        exact = obj.topk_edges if all(n >= obj.topk_edges for n in fan_in) else None
        cell = CellSpec(ops=names, num_inputs=num_inputs, num_nodes=num_nodes, edges_per_node=exact)
    return SpaceSpec(obj.space_name, {t: cell for t in obj.cell_types})


def json_value(value: Any) -> Any:
    """``value`` as plain JSON (tuples become lists), or raise ``TypeError``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise TypeError("non-finite float")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: json_value(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} is not JSON")


def recording_init(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a subclass ``__init__`` so the outermost call records its JSON-able arguments (the build options)."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args: Any, **kwargs: Any) -> None:
        outermost = "_space_options" not in self.__dict__
        if outermost:
            options: dict[str, Any] = {}
            try:
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
            except TypeError:  # the call itself raises Python's own error below
                bound = None
            for name, value in list(bound.arguments.items())[1:] if bound is not None else []:
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    continue
                for key, v in value.items() if kind is inspect.Parameter.VAR_KEYWORD else [(name, value)]:
                    with contextlib.suppress(TypeError):  # modules, callables...: not recorded; pass them at export
                        options[key] = json_value(v)
            self.__dict__["_space_options"] = options
        init(self, *args, **kwargs)
        if outermost and self._discrete is None:
            self.add_arch_groups()

    return wrapper


def register_space_class(cls: type[CellSupernet]) -> None:
    """Record ``cls`` as the class of space ``cls.space_name`` (a redefined class replaces the earlier one)."""
    _SPACE_CLASSES[cls.space_name] = cls


def space_class(name: str) -> type[CellSupernet] | None:
    """The :class:`CellSupernet` subclass that declared space ``name`` (None if no such class was defined)."""
    return _SPACE_CLASSES.get(name)


def space_classes() -> list[str]:
    """Names of the spaces declared by :class:`CellSupernet` subclasses so far (their modules imported)."""
    return sorted(_SPACE_CLASSES)
