"""The two shipped non-image spaces: 1-D conv cells and tabular cells (build, forward, genotype, export, PC-DARTS)."""

import pytest
import torch
from torch import nn

from dnas.cells.conv1d import Conv1dSupernet
from dnas.cells.edges import EdgeOptions
from dnas.cells.tabular import TabularSupernet
from dnas.export import build_model
from dnas.genotypes import Genotype
from dnas.ops import build_op
from dnas.ops.conv1d import CONV1D_PRIMITIVES
from dnas.ops.tabular import TABULAR_PRIMITIVES


@pytest.mark.parametrize("name", CONV1D_PRIMITIVES)
@pytest.mark.parametrize("stride,length,out_len", [(1, 40, 40), (2, 40, 20), (2, 9, 5)])
def test_conv1d_ops_keep_or_halve_the_length(name, stride, length, out_len):
    op = build_op(name, 4, 4, stride, affine=False)
    if name == "skip_connect" and stride == 2:
        pytest.skip("skip_connect's stride-2 form is DARTS' 2-D FactorizedReduce; 1-D cells use stride 1")
    assert op(torch.randn(2, 4, length)).shape == (2, 4, out_len)


def test_conv1d_dilated_op_sees_the_dilated_window():
    op = build_op("conv1d_k3_d2", 1, 1, 1, affine=True)
    conv = op.op[1]
    assert conv.dilation == (2,) and conv.padding == (2,) and conv.bias is None
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.zeros(1, 1, 9)
    x[0, 0, 4] = 1.0  # impulse; relu keeps it; the conv spreads it to positions 2, 4, 6
    y = conv(op.op[0](x))
    assert y[0, 0].nonzero().flatten().tolist() == [2, 4, 6]


@pytest.mark.parametrize("name", TABULAR_PRIMITIVES)
def test_tabular_ops_map_rows_to_rows(name):
    assert build_op(name, 8, 8, 1, affine=True)(torch.randn(5, 8)).shape == (5, 8)


def test_tabular_ops_reject_strides():
    with pytest.raises(ValueError, match="no spatial axis"):
        build_op("linear", 8, 8, 2, affine=True)


@pytest.mark.parametrize(
    "make,x",
    [
        (lambda **kw: Conv1dSupernet(channels=8, **kw), torch.randn(4, 1, 40)),
        (lambda **kw: TabularSupernet(in_features=6, num_classes=3, hidden=8, **kw), torch.randn(4, 6)),
    ],
)
@pytest.mark.parametrize("pc", [dict(), dict(edge_options=EdgeOptions(partial_channels=2, edge_normalization=True))])
def test_space_searches_and_exports(make, x, pc):
    torch.manual_seed(0)
    m = make(**pc)
    out = m(x)
    out.logsumexp(-1).mean().backward()
    for name, p in m.named_arch_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    if pc:
        assert [n for n, _ in m.named_arch_parameters()] == ["arch.cell.alpha", "arch.cell.beta"]
        edge = m.cells[0].dag.edges[0] if hasattr(m, "cells") else m.stages[0][0].dag.edges[0]
        assert type(edge).__name__ == "PartialChannelEdge"
    g = m.genotype()
    back = Genotype.from_json(g.to_json())
    assert back == g
    net = build_model(back).eval()
    assert net.is_discrete and list(net.arch_parameters()) == []
    assert net(x).shape == out.shape


def test_tabular_wrong_width_is_named():
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        TabularSupernet(in_features=6, hidden=8)(torch.randn(2, 7))


def test_exported_conv1d_network_uses_affine_norms():
    g = Conv1dSupernet(channels=8).genotype()
    net = build_model(g)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
    assert bns and all(b.affine for b in bns)


@pytest.mark.parametrize(
    "make,x,ops",
    [
        (lambda **kw: Conv1dSupernet(channels=8, **kw), torch.randn(4, 1, 40), CONV1D_PRIMITIVES[1:]),
        (
            lambda **kw: TabularSupernet(in_features=6, num_classes=3, hidden=8, **kw),
            torch.randn(4, 6),
            TABULAR_PRIMITIVES[1:],
        ),
    ],
)
def test_space_without_none_searches_its_subset_and_exports(make, x, ops):
    """DARTS-PT's "s5" move on the non-image spaces: ``primitives`` without ``none`` gives α one column per op."""
    assert "none" not in ops
    m = make(primitives=list(ops))
    (alpha,) = [p for n, p in m.named_arch_parameters() if n.endswith("alpha")]
    assert alpha.shape[1] == len(ops)
    with torch.no_grad():
        alpha.zero_()
        alpha[:, -1] = 5.0  # every edge prefers the last op
    g = m.genotype()
    assert {e.op for c in g.cells.values() for e in c.edges} == {ops[-1]}
    net = build_model(Genotype.from_json(g.to_json())).eval()
    assert net(x).shape == m(x).shape


def test_space_primitives_outside_the_space_are_named():
    with pytest.raises(ValueError, match="not among the space's declared candidates"):
        Conv1dSupernet(channels=8, primitives=["skip_connect", "linear"])
