"""dnas: differentiable neural architecture search on PyTorch Lightning.

The search and retrain modules (which import PyTorch Lightning) load on first use, so ``import dnas.ops`` or
``import dnas.cells`` in an exported model or a benchmark does not pay for Lightning. Importing ``dnas`` registers the
built-in ops and every built-in space's genotype rules (:mod:`dnas.spaces`), so a genotype is validated the same way
wherever it is read.
"""

from __future__ import annotations

import importlib

from dnas import ops as ops  # registers the built-in ops
from dnas import spaces as spaces  # registers every built-in space's SpaceSpec
from dnas.genotypes import Genotype, GenotypeError

__version__ = "0.1.0"

__all__ = [
    "DARTS",
    "FBNet",
    "GDAS",
    "PCDARTS",
    "ProxylessNAS",
    "SDDARTS",
    "Retrain",
    "Genotype",
    "GenotypeError",
    "__version__",
]

_LAZY = {"DARTS": "dnas.search", "PCDARTS": "dnas.search", "SDDARTS": "dnas.search", "FBNet": "dnas.search",
         "GDAS": "dnas.search", "ProxylessNAS": "dnas.search", "Retrain": "dnas.retrain"}  # fmt: skip


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dnas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
