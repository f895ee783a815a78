"""One edge-options object for every space: the same argument, the same edges, the same errors."""

import pytest
import torch

from dnas.cells import EdgeOptions
from dnas.cells.conv1d import Conv1dSupernet
from dnas.cells.darts import DartsSupernet
from dnas.cells.fbnet import FBNetSupernet
from dnas.cells.nb201 import NB201Supernet
from dnas.cells.tabular import TabularSupernet
from dnas.ops.mixed import MixedOp
from dnas.ops.partial import PartialChannelEdge

SPACES = {
    "darts": (lambda e: DartsSupernet(init_channels=4, num_classes=3, layers=3, edge_options=e), (3, 8, 8), "fused"),
    "nb201": (lambda e: NB201Supernet(init_channels=4, cells_per_stage=1, edge_options=e), (3, 8, 8), "naive"),
    "conv1d": (lambda e: Conv1dSupernet(channels=4, stages=1, edge_options=e), (1, 16), "naive"),
    "tabular": (lambda e: TabularSupernet(in_features=5, hidden=4, num_cells=1, edge_options=e), (5,), "naive"),
}


def _edges(net):
    return [m for m in net.modules() if isinstance(m, (MixedOp, PartialChannelEdge))]


@pytest.mark.parametrize("space", sorted(SPACES))
def test_every_space_builds_its_edges_from_the_one_options_object(space):
    make, shape, default_impl = SPACES[space]
    plain = make(None)
    assert plain.edge_options == EdgeOptions(mixed_op_impl=default_impl)  # None: the space's default
    assert all(isinstance(m, MixedOp) and m.impl == default_impl for m in _edges(plain))
    pc = make(EdgeOptions(mixed_op_impl="naive", partial_channels=2, edge_normalization=True))
    wrapped = [m for m in pc.modules() if isinstance(m, PartialChannelEdge)]
    assert wrapped and all(e.k == 2 and e.op.impl == "naive" for e in wrapped)
    assert all(g.beta is not None and g.beta.shape == (g.num_edges,) for g in pc.arch_groups.values())
    assert pc(torch.randn(2, *shape)).shape[0] == 2


def test_bad_options_are_one_clear_error():
    with pytest.raises(ValueError, match=r"mixed_op_impl must be one of \('naive', 'fused', 'fused_save'\)"):
        EdgeOptions(mixed_op_impl="fast")
    with pytest.raises(ValueError, match="partial_channels must be >= 1, got 0"):
        EdgeOptions(partial_channels=0)
    with pytest.raises(ValueError, match="partial_channels must be an int"):
        EdgeOptions(partial_channels=True)
    with pytest.raises(TypeError, match="edge_options must be a dnas.cells.EdgeOptions, got dict"):
        NB201Supernet(edge_options={"partial_channels": 2})
    with pytest.raises(ValueError, match=r"partial_channels=2 needs edges with as many output as input channels"):
        FBNetSupernet(
            num_classes=3, in_channels=1, input_size=8, width_mult=0.25, edge_options=EdgeOptions(partial_channels=2)
        )
