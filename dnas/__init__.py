"""dnas: differentiable neural architecture search on PyTorch Lightning.

The search and retrain modules (which import PyTorch Lightning) load on first use, so ``import dnas.ops`` or
``import dnas.cells`` in an exported model or a benchmark does not pay for Lightning.
"""

from __future__ import annotations

import importlib

from dnas import ops as ops  # registers the built-in ops
from dnas.genotypes import Genotype, GenotypeError

__version__ = "0.1.0"

__all__ = ["DARTS", "FBNet", "PCDARTS", "SDDARTS", "Retrain", "Genotype", "GenotypeError", "__version__"]

_LAZY = {"DARTS": "dnas.search", "PCDARTS": "dnas.search", "SDDARTS": "dnas.search", "FBNet": "dnas.search",
         "Retrain": "dnas.retrain"}  # fmt: skip


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dnas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
