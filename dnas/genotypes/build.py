"""Build options recorded in a genotype (:data:`BUILD_KEY`), one key with one schema for every space.

Export, retrain and the search report read them back with :func:`recorded_build` / :func:`build_options`, never from
module shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dnas.genotypes.core import Genotype, is_node_index
from dnas.genotypes.spec import GenotypeError
from dnas.safe_read import short

BUILD_KEY = "build"
"""``meta["build"]``: what a space needs to rebuild the discrete network of a genotype, recorded by its supernet.

Schema: ``{"options": {keyword: value, ...}, "input_shape": [C, ...]}`` — ``options`` are keyword arguments of the
space's builder (``dnas.export.build_model``) as plain JSON, ``input_shape`` the shape of one input sample (absent
when unknown). Genotypes written before this key existed kept CellSupernet options in ``meta["space_options"]`` and
FBNet's in ``meta["macro"]`` / ``meta["num_classes"]``; :func:`recorded_build` still reads those."""


CANDIDATES_KEY = "candidates"
"""``meta["candidates"]``: per cell, the ops its search chose from (α column order), recorded by the supernet; a space
may accept more ops than one search had (``dnas baseline`` draws random genotypes from these)."""


def recorded_build(genotype: Genotype) -> tuple[dict[str, Any], tuple[int, ...] | None]:
    """``(builder options, input shape or None)`` recorded in ``genotype.meta`` (see :data:`BUILD_KEY`).

    Raises:
        GenotypeError: the recorded entry does not follow the schema (naming the field).
    """
    meta = genotype.meta
    build = meta.get(BUILD_KEY)
    if build is None:  # older genotype files
        options = dict(meta.get("space_options") or {})
        if isinstance(meta.get("macro"), dict):
            options.update({k: v for k, v in meta["macro"].items() if v is not None})
            if "num_classes" in meta:
                options["num_classes"] = meta["num_classes"]
        build = {"options": options}
    if not isinstance(build, dict) or set(build) - {"options", "input_shape"}:
        raise GenotypeError(f"genotype meta.{BUILD_KEY} must be an object with 'options' and 'input_shape'")
    options = build.get("options", {})
    if not isinstance(options, dict) or not all(isinstance(k, str) and k.isidentifier() for k in options):
        raise GenotypeError(f"genotype meta.{BUILD_KEY}.options must be an object of keyword -> value")
    shape = build.get("input_shape")
    if shape is not None:
        if not (isinstance(shape, list) and shape and all(is_node_index(d) and d > 0 for d in shape)):
            raise GenotypeError(
                f"genotype meta.{BUILD_KEY}.input_shape must be a list of sizes >= 1, got {short(shape)}"
            )
        shape = tuple(shape)
    return dict(options), shape


def with_build(genotype: Genotype, options: Mapping[str, Any] | None = None, input_shape=None) -> Genotype:
    """``genotype`` with ``meta["build"]`` updated: ``options`` replace the recorded ones, ``input_shape`` is set."""
    build = dict(genotype.meta.get(BUILD_KEY) or {})
    if options is not None:
        build["options"] = dict(options)
    if input_shape is not None:
        build["input_shape"] = [int(d) for d in input_shape]
    return Genotype(genotype.space, genotype.cells, {**genotype.meta, BUILD_KEY: build})


def build_options(genotype: Genotype, options: Mapping[str, Any], accepted: Sequence[str] | None = None) -> dict:
    """A builder's keyword arguments: the recorded options (those in ``accepted``, when given), then ``options``.

    Recorded options a builder no longer takes are dropped (a genotype outlives the code that wrote it); explicit
    ``options`` are passed as they are, so a wrong keyword is the builder's clear ``TypeError``.
    """
    recorded, _ = recorded_build(genotype)
    if accepted is not None:
        recorded = {k: v for k, v in recorded.items() if k in accepted}
    return {**recorded, **options}
