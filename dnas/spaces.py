"""The built-in search spaces, registered when ``dnas`` is imported (``dnas/__init__.py`` imports this module).

Importing each space's module registers its :class:`~dnas.genotypes.SpaceSpec`; this module imports them all and
marks them built in, so every genotype read anywhere (``dnas.genotypes.load``, ``dnas plot``, ``dnas export``, a
checkpoint) is checked against the same rules, whatever else was imported before. A built-in space can afterwards
only gain ops (:func:`~dnas.genotypes.register_space`). A user's space registers when its module is imported.
"""

from __future__ import annotations

from dnas.cells import conv1d as conv1d
from dnas.cells import darts as darts  # also registers "nasnet" (NASNet/AmoebaNet cells in the DARTS network)
from dnas.cells import fbnet as fbnet
from dnas.cells import nb201 as nb201
from dnas.cells import tabular as tabular
from dnas.genotypes.spec import register_space, require_space_spec

BUILTIN_SPACES: tuple[str, ...] = ("conv1d", "darts", "fbnet", "nasnet", "nb201", "tabular")
"""Names of the spaces that ship with dnas."""

for _name in BUILTIN_SPACES:
    register_space(require_space_spec(_name, source="dnas.spaces"), builtin=True)
