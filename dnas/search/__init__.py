"""Search algorithms as LightningModules."""

from dnas.search.darts import DARTS

__all__ = ["DARTS"]
