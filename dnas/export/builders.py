"""The builder registry: one function per search space turning a genotype into a trainable ``nn.Module``."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from dnas.genotypes import Genotype, GenotypeError

Builder = Callable[..., nn.Module]

_BUILDERS: dict[str, Builder] = {}

# Spaces whose builder lives in a module that is imported on first use (keeps `import dnas` light).
_LAZY: dict[str, str] = {}


def register_builder(space: str, builder: Builder | None = None, *, lazy_module: str | None = None):
    """Register ``builder(genotype, **options) -> nn.Module`` for ``space`` (usable as a decorator).

    ``lazy_module`` instead names a module that registers the builder when imported.
    """
    if lazy_module is not None:
        _LAZY[space] = lazy_module
        return None

    def _register(fn: Builder) -> Builder:
        _BUILDERS[space] = fn
        return fn

    return _register(builder) if builder is not None else _register


def registered_builders() -> list[str]:
    return sorted(set(_BUILDERS) | set(_LAZY))


def get_builder(space: str) -> Builder:
    if space not in _BUILDERS and space in _LAZY:
        importlib.import_module(_LAZY[space])
    try:
        return _BUILDERS[space]
    except KeyError:
        raise GenotypeError(
            f"no exporter for search space {space!r}; spaces with one: {registered_builders()}"
        ) from None


def builder_options(space: str) -> tuple[str, ...]:
    """The keyword options the builder of ``space`` takes (``builder.options``, or its class's constructor's)."""
    builder = get_builder(space)
    names = getattr(builder, "options", None)
    if names is None and inspect.ismethod(builder) and isinstance(builder.__self__, type):
        params = inspect.signature(builder.__self__.__init__).parameters.values()
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names = tuple(p.name for p in params if p.name != "self" and p.kind in kinds)
    return tuple(names or ())


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
