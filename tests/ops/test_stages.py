"""The fused op's compiled stages against the modules they replace: forward bitwise, backward against ATen autograd."""

import copy

import pytest
import torch
from torch import nn

from dnas.ops.darts import DilConv, FactorizedReduce, SepConv
from dnas.ops.stages import (
    AvgPoolStage,
    BatchNormStage,
    ConvStage,
    MaxPoolStage,
    compile_chain,
    depthwise_weight_grad,
)

TOL64 = dict(rtol=1e-10, atol=1e-12)


def _autograd(module, x, g):
    x = x.clone().requires_grad_()
    y = module(x)
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(y, [x, *params], g)
    return y.detach(), grads[0], grads[1:]


def _check_stage(stage, module, x, bitwise=True):
    """Stage forward == module forward (bitwise), replay == forward, backward == autograd through the module."""
    ref_module = copy.deepcopy(module)
    y, aux = stage.forward(x)
    y_ref, gx_ref, gp_ref = _autograd(ref_module, x, g := torch.randn_like(y))
    if bitwise:
        assert torch.equal(y, y_ref)
    torch.testing.assert_close(stage.replay(x, aux), y, **TOL64)
    gx, gps = stage.backward(g, x, aux)
    torch.testing.assert_close(gx, gx_ref, **TOL64)
    gps = [p for p in gps if p is not None]
    assert len(gps) == len(gp_ref)
    for a, b in zip(gps, gp_ref):
        torch.testing.assert_close(a, b, **TOL64)
    for a, b in zip(module.buffers(), ref_module.buffers()):  # the forward updated the buffers exactly as the module
        assert torch.equal(a, b)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("k", "d"), [(3, 1), (5, 1), (3, 2), (5, 2), (7, 1)])
@pytest.mark.parametrize("size", [8, 7])
def test_depthwise_conv_stage(stride, k, d, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, k, stride, d * (k - 1) // 2, dilation=d, groups=3, bias=False).double()
    x = torch.randn(2, 3, size, size + 2, dtype=torch.float64)  # odd size at stride 2 takes ATen's backward
    _check_stage(ConvStage(conv), conv, x)


@pytest.mark.parametrize(("k", "d", "s"), [(3, 1, 1), (5, 2, 1), (3, 1, 2), (5, 1, 2), (3, 2, 2), (5, 2, 2)])
def test_depthwise_weight_grad_against_aten(k, d, s):
    torch.manual_seed(1)
    p = d * (k - 1) // 2
    x = torch.randn(3, 4, 10, 6, dtype=torch.float64)
    w = torch.randn(4, 1, k, k, dtype=torch.float64)
    y = torch.nn.functional.conv2d(x, w, None, s, p, d, 4)
    g = torch.randn_like(y)
    ref = torch.ops.aten.convolution_backward(g, x, w, None, [s] * 2, [p] * 2, [d] * 2, False, [0, 0], 4,
                                              [False, True, False])[1]  # fmt: skip
    torch.testing.assert_close(depthwise_weight_grad(x, g, k, d, p, s), ref, **TOL64)


def test_depthwise_weight_grad_refuses_what_it_cannot_do():
    x = torch.randn(1, 2, 7, 7)
    with pytest.raises(ValueError, match="divide by stride"):
        depthwise_weight_grad(x, torch.randn(1, 2, 4, 4), 3, 1, 1, 2)


@pytest.mark.parametrize("bias", [False, True])
def test_pointwise_and_dense_conv_stages(bias):
    torch.manual_seed(0)
    for conv in (nn.Conv2d(4, 6, 1, bias=bias), nn.Conv2d(4, 6, 3, padding=1, bias=bias), nn.Conv2d(4, 4, 1, 2)):
        conv = conv.double()
        _check_stage(ConvStage(conv), conv, torch.randn(2, 4, 6, 6, dtype=torch.float64))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [6, 7])
def test_pool_stages_bitwise_and_ties_route_like_aten(stride, size):
    torch.manual_seed(0)
    # small integers: many exact ties, so the max-pool gradient must pick the same (first) maximum as ATen
    x = torch.randint(-2, 3, (2, 3, size, size)).double()
    mp, ap = nn.MaxPool2d(3, stride, 1), nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    _check_stage(MaxPoolStage(mp), mp, x)
    _check_stage(AvgPoolStage(ap), ap, x)
    xf = torch.randn(4, 5, size, size)  # fp32: the average pool adds in ATen's order, so it is bitwise too
    assert torch.equal(AvgPoolStage(ap).forward(xf)[0], ap(xf))
    assert torch.equal(MaxPoolStage(mp).forward(xf)[0], mp(xf))


@pytest.mark.parametrize(
    "bn",
    [
        nn.BatchNorm2d(3, affine=False),
        nn.BatchNorm2d(3, affine=True),
        nn.BatchNorm2d(3, momentum=None),
        nn.BatchNorm2d(3, track_running_stats=False),
    ],
)
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_stage(bn, train):
    torch.manual_seed(0)
    bn = copy.deepcopy(bn).double().train(train)
    if bn.affine:
        nn.init.normal_(bn.weight), nn.init.normal_(bn.bias)
    stage = BatchNormStage(bn)
    for _ in range(2):  # running statistics (and momentum=None's counter) evolve as the module's
        _check_stage(stage, bn, torch.randn(4, 3, 5, 5, dtype=torch.float64))


def test_factorized_reduce_chain():
    torch.manual_seed(0)
    fr = FactorizedReduce(4, 6, affine=True).double()
    chain = compile_chain(fr)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    ref = copy.deepcopy(fr)
    auxs, inputs, y = [], [], x
    for st in chain:
        inputs.append(y)
        y, aux = st.forward(y)
        auxs.append(aux)
    y_ref, gx_ref, gp_ref = _autograd(ref, x, g := torch.randn_like(y))
    assert torch.equal(y, y_ref)
    grads = {}
    for st, xin, aux in zip(reversed(chain), reversed(inputs), reversed(auxs)):
        g, gps = st.backward(g, xin, aux)
        grads.update({id(p): gp for p, gp in zip(st.params, gps)})
    torch.testing.assert_close(g, gx_ref, **TOL64)
    for p, gp in zip(fr.parameters(), gp_ref):
        torch.testing.assert_close(grads[id(p)], gp, **TOL64)
    with pytest.raises(ValueError, match="even spatial sizes"):
        chain[1].forward(torch.randn(1, 4, 5, 5, dtype=torch.float64))


def test_compile_chain_covers_darts_blocks_and_refuses_unknown_modules():
    assert [type(s).__name__ for s in compile_chain(SepConv(4, 4, 3, 1, 1))] == [
        "ReLUStage", "ConvStage", "ConvStage", "BatchNormStage", "ReLUStage", "ConvStage", "ConvStage", "BatchNormStage"
    ]  # fmt: skip
    assert len(compile_chain(DilConv(4, 4, 3, 1, 2, 2))) == 4
    assert compile_chain(nn.Identity()) == []

    class MyConv(nn.Conv2d):  # a subclass may override forward: never split
        pass

    assert compile_chain(MyConv(2, 2, 1)) is None
    assert compile_chain(nn.Sequential(nn.ReLU(), nn.GELU())) is None
    assert compile_chain(nn.MaxPool2d(2)) is None
    assert compile_chain(nn.AvgPool2d(3, 1, 1, count_include_pad=True)) is None
