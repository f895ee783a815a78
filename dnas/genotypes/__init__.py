"""Genotypes: the architecture value type, its JSON format, and the published genotypes shipped as data."""

from dnas.genotypes.catalog import load, published
from dnas.genotypes.core import CellGenotype, Edge, Genotype
from dnas.genotypes.spec import (
    CellSpec,
    GenotypeError,
    SpaceSpec,
    get_space_spec,
    register_space,
    registered_spaces,
    require_space_spec,
)

__all__ = [
    "CellGenotype",
    "CellSpec",
    "Edge",
    "Genotype",
    "GenotypeError",
    "SpaceSpec",
    "get_space_spec",
    "load",
    "published",
    "register_space",
    "registered_spaces",
    "require_space_spec",
]
