"""The builder registry: one function per search space turning a genotype into a trainable ``nn.Module``."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from dnas.genotypes import Genotype, GenotypeError

Builder = Callable[..., nn.Module]

_BUILDERS: dict[str, Builder] = {}

# Spaces whose builder lives in a module that is imported on first use (keeps `import dnas` light).
_LAZY: dict[str, str] = {}


def register_builder(space: str, builder: Builder | None = None, *, lazy_module: str | None = None) -> None:
    """Register ``builder(genotype, **options) -> nn.Module`` for ``space`` (or a ``lazy_module`` registering it)."""
    if lazy_module is not None:
        _LAZY[space] = lazy_module
    elif builder is not None:
        _BUILDERS[space] = builder


def registered_builders() -> list[str]:
    """Spaces with a builder: registered ones and every :class:`~dnas.cells.CellSupernet` space defined so far."""
    from dnas.cells.declarations import space_classes

    return sorted(set(_BUILDERS) | set(_LAZY) | set(space_classes()))


def get_builder(space: str) -> Builder:
    """The builder of ``space``: a registered one, else the ``from_genotype`` of the cell space that declared it."""
    if space not in _BUILDERS and space in _LAZY:
        importlib.import_module(_LAZY[space])
    if space in _BUILDERS:
        return _BUILDERS[space]
    from dnas.cells.declarations import space_class

    cls = space_class(space)
    if cls is None:
        raise GenotypeError(f"no exporter for search space {space!r}; spaces with one: {registered_builders()}")
    return cls.from_genotype


def builder_signature(space: str) -> inspect.Signature:
    """The keyword options the builder of ``space`` takes, with their defaults.

    A builder function declares them as its ``signature`` attribute (the class it builds, without the genotype); a
    :class:`~dnas.cells.CellSupernet` space's builder (``from_genotype``) takes its class's constructor arguments.
    """
    builder = get_builder(space)
    sig = getattr(builder, "signature", None)
    if sig is None and inspect.ismethod(builder) and isinstance(builder.__self__, type):
        sig = inspect.signature(builder.__self__.__init__)
    if sig is None:
        return inspect.Signature()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return sig.replace(parameters=[p for p in sig.parameters.values() if p.name != "self" and p.kind in kinds])


def builder_options(space: str) -> tuple[str, ...]:
    """Names of the keyword options the builder of ``space`` takes (see :func:`builder_signature`)."""
    return tuple(builder_signature(space).parameters)


def resolved_options(genotype: Genotype, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every option the network of ``genotype`` is built with: explicit ``options``, then recorded, then defaults."""
    from dnas.genotypes.build import build_options

    sig = builder_signature(genotype.space)
    defaults = {p.name: p.default for p in sig.parameters.values() if p.default is not inspect.Parameter.empty}
    return {**defaults, **build_options(genotype, dict(options or {}), list(sig.parameters))}


def default_input_shape(genotype: Genotype, options: Mapping[str, Any] | None = None) -> tuple[int, ...]:
    """One input sample's shape when none is given.

    The shape the search recorded (channels from the options when set), else an image of the network's channels at
    32×32 (``input_size`` when the builder takes one, 224 for the ImageNet stem).
    """
    from dnas.genotypes.build import build_options, recorded_build

    merged = build_options(genotype, dict(options or {}))
    recorded = recorded_build(genotype)[1]
    channels = merged.get("in_channels")
    if recorded is not None:
        return (int(channels), *recorded[1:]) if channels and len(recorded) >= 2 else recorded
    side = merged.get("input_size") or (224 if merged.get("stem") == "imagenet" else 32)
    return (int(channels or 3), int(side), int(side))


def build_model(genotype: Genotype | str, **options: Any) -> nn.Module:
    """Build the discrete network of ``genotype`` (a :class:`~dnas.Genotype`, a published name or a JSON path).

    ``options`` override the build options the genotype recorded (``meta["build"]``; a search records its supernet's
    sizes); the rest take the builder's defaults. :func:`builder_options` lists them (DARTS: ``init_channels``,
    ``layers``, ``num_classes``, ``in_channels``, ``stem``, ``auxiliary``, ``drop_path_prob``).
    """
    if isinstance(genotype, str):
        from dnas.genotypes import load

        genotype = load(genotype)
    return get_builder(genotype.space)(genotype, **options)
