"""dnas: differentiable neural architecture search on PyTorch Lightning."""

from dnas import ops as ops  # registers the built-in ops
from dnas.genotypes import Genotype, GenotypeError
from dnas.retrain import Retrain
from dnas.search import DARTS, PCDARTS, SDDARTS, FBNet

__version__ = "0.1.0"

__all__ = ["DARTS", "FBNet", "PCDARTS", "SDDARTS", "Retrain", "Genotype", "GenotypeError", "__version__"]
