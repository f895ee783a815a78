"""Search algorithms as LightningModules."""

from dnas.search.darts import DARTS
from dnas.search.fbnet import FBNet
from dnas.search.gdas import GDAS
from dnas.search.pcdarts import PCDARTS
from dnas.search.proxyless import ProxylessNAS
from dnas.search.sddarts import SDDARTS

__all__ = ["DARTS", "FBNet", "GDAS", "PCDARTS", "ProxylessNAS", "SDDARTS"]
