"""PC-DARTS options of DartsSupernet against the reference formulation (yuhuixu1993/PC-DARTS `model_search.py`).

The oracle re-implements the reference ``MixedOp.forward`` (partial channels, ``MaxPool2d(2, 2)`` when the op output
is smaller, view/transpose channel shuffle), ``Cell.forward`` (``weights2[offset + j] * op(h, w)``) and
``Network.forward`` (β softmax over the slices [0:2], [2:5], [5:9], [9:14]) on a reference-layout state dict. It
reuses only the candidate-op modules of our supernet (checked against quark0/darts elsewhere), not the wrapper.
"""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnas.cells.darts import DartsSupernet, import_reference_state
from dnas.cells.edges import EdgeOptions


def _shuffle(x, g):
    b, c, h, w = x.shape
    return x.view(b, g, c // g, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


def _betas(beta):
    ws, start, n = [F.softmax(beta[0:2], -1)], 2, 3
    for _ in range(3):
        ws.append(F.softmax(beta[start : start + n], -1))
        start, n = start + n, n + 1
    return torch.cat(ws)


def reference_forward(model, sd, x, k):
    s0 = s1 = model.stem(x)
    for cell in model.cells:
        g = "reduce" if cell.reduction else "normal"
        weights, weights2 = F.softmax(sd[f"alphas_{g}"], -1), _betas(sd[f"betas_{g}"])
        states, offset = [cell.preprocess0(s0), cell.preprocess1(s1)], 0
        for _ in range(4):
            total = 0
            for j, h in enumerate(states):
                ops = cell.dag.edges[offset + j].op  # candidate ops only (C//k channels)
                dim = h.shape[1]
                t1 = ops(h[:, : dim // k], weights[offset + j])
                t2 = h[:, dim // k :]
                ans = torch.cat([t1, t2 if t1.shape[2] == h.shape[2] else nn.MaxPool2d(2, 2)(t2)], 1)
                total = total + weights2[offset + j] * _shuffle(ans, k)
            offset += len(states)
            states.append(total)
        s0, s1 = s1, torch.cat(states[-4:], 1)
    return model.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def _reference_state(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("arch."):  # α, β and selection buffers: the reference keeps α/β outside its state dict
            continue
        new = 0.5 + torch.rand(value.shape, generator=g) if key.endswith("running_var") else None
        if key.endswith("num_batches_tracked"):
            new = torch.tensor(3)
        if new is None:
            new = 0.3 * torch.randn(value.shape, generator=g)
        state[re.sub(r"\.dag\.edges\.(\d+)\.op\.", r"._ops.\1.", key)] = new.to(value.dtype)
    for grp in ("normal", "reduce"):
        state[f"alphas_{grp}"] = torch.randn(14, 8, generator=g, dtype=torch.float64)
        state[f"betas_{grp}"] = torch.randn(14, generator=g, dtype=torch.float64)
    return state


@pytest.mark.parametrize("k", [2, 4])
def test_pcdarts_supernet_matches_reference_forward(k):
    torch.manual_seed(0)
    model = DartsSupernet(
        init_channels=8, num_classes=5, layers=3, edge_options=EdgeOptions(partial_channels=k, edge_normalization=True)
    )
    model = model.double()
    state = _reference_state(model)
    assert "cells.0._ops.3._ops.4.op.1.weight" in state  # reference key layout, no trace of our wrapper
    import_reference_state(model, state)
    assert torch.equal(model.arch["reduce"].beta.detach(), state["betas_reduce"])
    model.eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference_forward(model, state, x, k), rtol=1e-10, atol=1e-10)


def test_k1_without_edge_normalisation_is_darts():
    torch.manual_seed(0)
    darts = DartsSupernet(init_channels=4, num_classes=3, layers=3)
    torch.manual_seed(0)
    pc = DartsSupernet(
        init_channels=4, num_classes=3, layers=3, edge_options=EdgeOptions(partial_channels=1, edge_normalization=False)
    )
    assert list(darts.state_dict()) == list(pc.state_dict())
    for a, b in zip(darts.state_dict().values(), pc.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(darts(x), pc(x))


def test_beta_parameters_and_edge_scales():
    torch.manual_seed(0)
    model = DartsSupernet(
        init_channels=4, num_classes=3, layers=3, edge_options=EdgeOptions(partial_channels=2, edge_normalization=True)
    )
    names = [n for n, _ in model.named_arch_parameters()]
    assert names == ["arch.normal.alpha", "arch.normal.beta", "arch.reduce.alpha", "arch.reduce.beta"]
    beta = model.arch["normal"].beta
    assert beta.shape == (14,) and 0 < beta.abs().max() < 1e-2  # 1e-3·N(0,1)
    arch = {id(p) for p in model.arch_parameters()}
    assert not any(id(p) in arch for p in model.weight_parameters())
    with torch.no_grad():
        model.arch["normal"].beta.copy_(torch.arange(14.0))
    scales = model.edge_scales("normal")
    assert [len(s) for s in scales] == [2, 3, 4, 5]
    torch.testing.assert_close(scales[1], torch.softmax(torch.tensor([2.0, 3.0, 4.0]), -1))
    assert DartsSupernet(init_channels=4, num_classes=3, layers=3).edge_scales("normal") is None
    with pytest.raises(ValueError, match="divide init_channels"):
        DartsSupernet(init_channels=6, edge_options=EdgeOptions(partial_channels=4))


def test_genotype_selects_edges_by_alpha_times_beta_and_respects_masks():
    torch.manual_seed(0)
    model = DartsSupernet(
        init_channels=4, num_classes=3, layers=3, edge_options=EdgeOptions(partial_channels=2, edge_normalization=True)
    )
    with torch.no_grad():
        model.alpha("normal").zero_()
        model.alpha("normal")[:, 4] = 2.0  # every edge: sep_conv_3x3, same strength
        model.alpha("normal")[3, 5] = 3.0  # row 3 (1->3) op sep_conv_5x5 is the strongest α ...
        model.arch["normal"].beta.zero_()
        model.arch["normal"].beta[2] = 1.0  # ... but β favours rows 2 (0->3) and 4 (2->3) of node 3
        model.arch["normal"].beta[4] = 1.0
    w = model.selection_weights()["normal"]
    alpha = torch.softmax(model.alpha("normal").detach(), -1)
    beta3 = torch.softmax(model.arch["normal"].beta.detach()[2:5], -1)
    torch.testing.assert_close(w[2:5], alpha[2:5] * beta3[:, None])
    node3 = [e for e in model.genotype().cells["normal"].edges if e.dst == 3]
    # α alone would keep 1->3 (score .. sep_conv_5x5); α·β keeps 0->3 and 2->3
    assert sorted(e.src for e in node3) == [0, 2]
    with model.masked("normal", 2):  # perturbation selection: a masked edge contributes nothing and is never kept
        assert float(model.selection_weights()["normal"][2].abs().sum()) == 0.0
        assert sorted(e.src for e in model.genotype().cells["normal"].edges if e.dst == 3) == [1, 2]
        x = torch.randn(2, 3, 8, 8)
        model.eval()
        masked_out = model(x)
    weights = model.edge_weights()
    weights["normal"] = weights["normal"].clone()
    weights["normal"][2] = 0.0
    torch.testing.assert_close(masked_out, model(x, weights))


def test_pcdarts_search_network_weight_count():
    """PC-DARTS' CIFAR-10 search network (C=16, 8 cells, k=4, edge normalisation): 299,578 weights.

    The candidates see C/k channels, so the count is far below DARTS' 1,930,618 at the same sizes; α and β (14×8 + 14
    per cell type) are architecture parameters, not weights.
    """
    options = EdgeOptions(partial_channels=4, edge_normalization=True)
    model = DartsSupernet(init_channels=16, num_classes=10, layers=8, edge_options=options)
    assert sum(p.numel() for p in model.weight_parameters()) == 299_578
    assert sum(p.numel() for p in model.arch_parameters()) == 2 * (14 * 8 + 14)
