"""Search algorithms as LightningModules."""

from dnas.search.darts import DARTS
from dnas.search.fbnet import FBNet

__all__ = ["DARTS", "FBNet"]
