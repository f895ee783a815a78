"""One edge-options object for every space: the same argument, the same edges, the same errors."""

import pytest
import torch

from dnas.cells import CellSupernet, EdgeOptions
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


@pytest.mark.parametrize("edge_normalization", [False, True])
def test_alpha_then_beta_are_the_last_draws_of_construction(edge_normalization, monkeypatch):
    """α (then β) come after every module, as the reference search networks draw them (quark0/darts
    ``_initialize_alphas``, PC-DARTS, AutoDL-Projects ``search_model_darts.py``): the same seed without α creation
    leaves the RNG exactly where α's ``1e-3·N(0,1)`` is drawn, then β's."""
    opts = EdgeOptions(edge_normalization=edge_normalization)
    torch.manual_seed(0)
    net = NB201Supernet(init_channels=4, cells_per_stage=1, edge_options=opts)
    monkeypatch.setattr(CellSupernet, "add_arch_groups", lambda self: None)
    torch.manual_seed(0)
    bare = NB201Supernet(init_channels=4, cells_per_stage=1, edge_options=opts)
    assert not list(bare.arch_parameters())
    group = net.arch_groups["cell"]
    assert torch.equal(group.alpha, 1e-3 * torch.randn(6, 5))
    assert (group.beta is None) != edge_normalization
    if edge_normalization:
        assert torch.equal(group.beta, 1e-3 * torch.randn(6))


def test_darts_supernet_is_a_cell_space_whose_discrete_network_is_the_evaluation_network():
    net = DartsSupernet(init_channels=2, layers=1, in_channels=1)
    assert isinstance(net, CellSupernet) and list(net.arch_groups) == ["normal", "reduce"]
    with pytest.raises(TypeError, match="DartsEvalNetwork"):
        DartsSupernet.from_genotype(net.genotype())
