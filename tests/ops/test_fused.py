"""The fused mixed op against the naive one (the oracle), gradcheck, and its use by the DARTS supernet/architect."""

import copy

import pytest
import torch
from torch import nn

from dnas import DARTS
from dnas.cells.darts import DartsSupernet
from dnas.cells.edges import EdgeOptions
from dnas.ops import MixedOp, register_op
from dnas.ops.fused import FusedMixedFunction

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def _pair(impl, dtype, stride=1, C=4, **kw):
    torch.manual_seed(0)
    naive = MixedOp(C, stride, impl="naive", **kw).to(dtype)
    fused = copy.deepcopy(naive)
    fused.impl = impl
    return naive, fused


def _steps(op, x, w, grads, steps, w_grad=True):
    """Run ``steps`` forward/backward passes; return the last output and the accumulated gradients."""
    x = x.clone().requires_grad_()
    w = w.clone().requires_grad_(w_grad)
    for g in grads[:steps]:
        y = op(x, w)
        y.backward(g)
    return y, x.grad, w.grad, [p.grad for p in op.parameters()]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("impl", ["fused", "fused_save"])
@pytest.mark.parametrize("stride", [1, 2])
def test_matches_naive(dtype, impl, stride):
    naive, fused = _pair(impl, dtype, stride)
    torch.manual_seed(1)
    x = torch.randn(2, 4, 6, 6, dtype=dtype)
    w = torch.randn(8, dtype=dtype).softmax(0)
    out_shape = naive(x, w).shape
    naive.load_state_dict(fused.state_dict())  # undo that forward's running-stat update
    grads = [torch.randn(out_shape, dtype=dtype) for _ in range(3)]
    yn, gxn, gwn, gpn = _steps(naive, x, w, grads, 3)
    yf, gxf, gwf, gpf = _steps(fused, x, w, grads, 3)
    assert torch.equal(yn, yf), "forward must be bitwise equal to the naive sum"
    torch.testing.assert_close(gxf, gxn, **TOL[dtype])
    torch.testing.assert_close(gwf, gwn, **TOL[dtype])
    for a, b in zip(gpf, gpn):
        torch.testing.assert_close(a, b, **TOL[dtype])
    # running statistics updated exactly once per forward, num_batches_tracked included
    for (name, a), (_, b) in zip(naive.named_buffers(), fused.named_buffers()):
        assert torch.equal(a, b), name
    assert all(int(b) == 3 for n, b in fused.named_buffers() if n.endswith("num_batches_tracked"))
    assert gwf[0].item() == 0.0 and gwn[0].item() == 0.0  # `none`: a true zero α gradient


def test_eval_mode_and_no_grad_match_naive():
    naive, fused = _pair("fused", torch.float64)
    x, w = torch.randn(2, 4, 6, 6, dtype=torch.float64), torch.randn(8, dtype=torch.float64).softmax(0)
    naive(x, w), fused(x, w)  # some running statistics
    naive.eval(), fused.eval()
    with torch.no_grad():
        assert torch.equal(naive(x, w), fused(x, w))


def test_gradcheck_tiny():
    torch.manual_seed(0)
    op = MixedOp(2, 1, impl="fused").double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, dtype=torch.float64).softmax(0).requires_grad_()
    params = list(op.parameters())

    def f(x, w, *ps):
        return FusedMixedFunction.apply(op, "recompute", False, True, x, w, *ps)

    assert torch.autograd.gradcheck(f, (x, w, *params), fast_mode=True)


def test_deterministic():
    def run():
        _, fused = _pair("fused", torch.float32)
        torch.manual_seed(5)
        x = torch.randn(2, 4, 6, 6)
        w = torch.randn(8).softmax(0)
        return _steps(fused, x, w, [torch.randn(2, 4, 6, 6) for _ in range(2)], 2)

    a, b = run(), run()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    assert all(torch.equal(p, q) for p, q in zip(a[3], b[3]))


@pytest.mark.parametrize("impl", ["fused", "fused_save"])
def test_double_backward_raises_clearly(impl):
    _, fused = _pair(impl, torch.float64)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, dtype=torch.float64).softmax(0).requires_grad_()
    loss = fused(x, w).square().sum()
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, w, create_graph=True)


def _count_calls(monkeypatch):
    """Per candidate, 1 if the fused op ran it in the last forward (spies on its choice of active candidates)."""
    import dnas.ops.fused as fused_mod

    calls = [0] * 8
    choose = fused_mod._active_ops

    def spy(*args):
        active = choose(*args)
        calls[:] = [int(k in active) for k in range(len(calls))]
        return active

    monkeypatch.setattr(fused_mod, "_active_ops", spy)
    return calls


def test_hard_one_hot_skips_only_where_exact(monkeypatch):
    naive, fused = _pair("fused", torch.float64)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    hard = torch.zeros(8, dtype=torch.float64)
    hard[4] = 1.0
    calls = _count_calls(monkeypatch)
    # training BN and no skip_zero_weights: every op with BN runs (running statistics must match naive);
    # the stateless identity (skip_connect) is skipped, `none` always is
    assert torch.equal(fused(x, hard), naive(x, hard))
    assert calls == [0, 1, 1, 0, 1, 1, 1, 1]
    for a, b in zip(naive.buffers(), fused.buffers()):
        assert torch.equal(a, b)
    # eval mode: skipping is exact, only the chosen op runs
    naive.eval(), fused.eval()
    before = [b.clone() for b in fused.buffers()]
    assert torch.equal(fused(x, hard), naive(x, hard))
    assert calls == [0, 0, 0, 0, 1, 0, 0, 0]
    assert all(torch.equal(a, b) for a, b in zip(before, fused.buffers()))


def test_skip_zero_weights_in_training_keeps_outputs_and_gradients(monkeypatch):
    naive, fused = _pair("fused", torch.float64, skip_zero_weights=True)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    hard = torch.zeros(8, dtype=torch.float64)
    hard[5] = 1.0
    calls = _count_calls(monkeypatch)
    before = {n: b.clone() for n, b in fused.named_buffers()}
    g = [torch.randn(2, 4, 6, 6, dtype=torch.float64)]
    yn, gxn, _, gpn = _steps(naive, x, hard, g, 1, w_grad=False)
    yf, gxf, _, gpf = _steps(fused, x, hard, g, 1, w_grad=False)
    assert torch.equal(yn, yf)
    torch.testing.assert_close(gxf, gxn, **TOL[torch.float64])
    for a, b in zip(gpf, gpn):  # skipped ops' parameters get exact zeros, as naive gives them
        torch.testing.assert_close(a, b, **TOL[torch.float64])
    assert calls == [0, 0, 0, 0, 0, 1, 0, 0]
    assert torch.equal(fused._ops[1][1].running_mean, before["_ops.1.1.running_mean"])  # skipped: not updated


def test_straight_through_gumbel_weights_keep_all_alpha_gradients():
    naive, fused = _pair("fused", torch.float64)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    logits = torch.randn(8, dtype=torch.float64)
    soft = logits.softmax(0)
    hard = torch.zeros_like(soft)
    hard[soft.argmax()] = 1.0
    w = hard - soft + soft  # straight-through values, exactly one-hot
    g = [torch.randn(2, 4, 6, 6, dtype=torch.float64)]
    _, _, gwn, _ = _steps(naive, x, w, g, 1)
    _, _, gwf, _ = _steps(fused, x, w, g, 1)
    torch.testing.assert_close(gwf, gwn, **TOL[torch.float64])
    assert (gwf[1:] != 0).all()


class _Conv1dBN(nn.Module):
    """A user op with its own forward (not split at a ReLU): conv1d, BN, tanh."""

    def __init__(self, C):
        super().__init__()
        self.conv = nn.Conv1d(C, C, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm1d(C)

    def forward(self, x):
        return torch.tanh(self.bn(self.conv(x)))


register_op("_test_fused_conv1d_bn", lambda C_in, C_out, stride, affine: _Conv1dBN(C_in), overwrite=True)
register_op(
    "_test_fused_relu_mlp",
    lambda C_in, C_out, stride, affine: nn.Sequential(nn.ReLU(), nn.Conv1d(C_in, C_out, 1), nn.BatchNorm1d(C_out)),
    overwrite=True,
)


@pytest.mark.parametrize("impl", ["fused", "fused_save"])
def test_generic_user_candidates_on_1d(impl):
    prims = ("none", "skip_connect", "_test_fused_conv1d_bn", "_test_fused_relu_mlp")
    naive, fused = _pair(impl, torch.float64, primitives=prims, pool_bn=False)
    x = torch.randn(3, 4, 10, dtype=torch.float64)
    w = torch.randn(4, dtype=torch.float64).softmax(0)
    g = [torch.randn(3, 4, 10, dtype=torch.float64) for _ in range(2)]
    yn, gxn, gwn, gpn = _steps(naive, x, w, g, 2)
    yf, gxf, gwf, gpf = _steps(fused, x, w, g, 2)
    assert torch.equal(yn, yf)
    for a, b in zip([gxf, gwf, *gpf], [gxn, gwn, *gpn]):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_partial_channel_view_input():
    """PC-DARTS feeds a channel slice (a non-contiguous view) of the edge input."""
    naive, fused = _pair("fused", torch.float32, C=2)
    full = torch.randn(2, 8, 6, 6)
    w = torch.randn(8).softmax(0)
    outs = []
    for op in (naive, fused):
        xf = full.clone().requires_grad_()
        y = op(xf[:, :2], w)
        y.backward(torch.ones_like(y))
        outs.append((y, xf.grad))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[1][1], outs[0][1], **TOL[torch.float32])


def _supernets():
    torch.manual_seed(0)
    naive = DartsSupernet(init_channels=2, num_classes=3, layers=3, in_channels=1).double()
    fused = DartsSupernet(
        init_channels=2, num_classes=3, layers=3, in_channels=1, edge_options=EdgeOptions(mixed_op_impl="fused")
    ).double()
    fused.load_state_dict(naive.state_dict())
    with torch.no_grad():
        for a, b in zip(naive.arch_parameters(), fused.arch_parameters()):
            a.copy_(torch.randn_like(a))
            b.copy_(a)
    return naive, fused


def test_supernet_training_steps_end_at_same_alpha():
    results = []
    for net in _supernets():
        torch.manual_seed(1)
        w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
        a_opt = torch.optim.Adam(net.arch_parameters(), lr=3e-2, betas=(0.5, 0.999), weight_decay=1e-3)
        for _ in range(3):
            x, y = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (4,))
            for opt in (a_opt, w_opt):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
        results.append(net)
    naive, fused = results
    for a, b in zip(naive.arch_parameters(), fused.arch_parameters()):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)
    for (n, a), (_, b) in zip(naive.state_dict().items(), fused.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10, msg=n)


def test_darts_unrolled_architect_works_with_fused():
    grads = []
    for net in _supernets():
        module = DARTS(net, unrolled=True)
        w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
        torch.manual_seed(2)
        train = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (4,))
        val = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (4,))
        g, _, _ = module.arch_gradient_unrolled(w_opt, train, val, net.arch_parameters())
        grads.append(g)
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10)
        assert a.abs().sum() > 0


def test_bad_impl_and_weights_shape():
    with pytest.raises(ValueError, match="mixed_op_impl must be one of"):
        MixedOp(4, impl="fast")
    op = MixedOp(4, impl="fused")
    with pytest.raises(ValueError, match="one weight per candidate"):
        op(torch.randn(1, 4, 4, 4), torch.randn(2, 8))


def test_torch_compile_matches_naive():
    naive, fused = _pair("fused", torch.float64)
    compiled = torch.compile(fused, backend="aot_eager")
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, dtype=torch.float64).softmax(0).requires_grad_()
    yn, yc = naive(x, w), compiled(x, w)
    assert torch.equal(yn, yc)
    for a, b in zip(torch.autograd.grad(yc.sum(), [x, w]), torch.autograd.grad(yn.sum(), [x, w])):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_every_registered_op_matches_naive():
    """Every op of every space (DARTS, NAS-Bench-201, FBNet, 1-D, tabular, …) on each input rank it accepts."""
    from dnas.ops import registered_ops

    shapes = {4: (2, 8, 6, 6), 3: (2, 8, 10), 2: (4, 8)}
    checked = set()
    for name in registered_ops():
        prims = ("none", "skip_connect", name) if name not in ("none", "skip_connect") else (name,)
        for shape in shapes.values():
            for stride in (1, 2):
                torch.manual_seed(0)
                try:
                    naive = MixedOp(8, stride, primitives=prims, pool_bn=False).double()
                    x = torch.randn(*shape, dtype=torch.float64)
                    w = torch.randn(len(prims), dtype=torch.float64).softmax(0)
                    naive(x, w)  # does this op accept this rank/stride at all?
                except (RuntimeError, ValueError, IndexError):
                    continue
                naive = MixedOp(8, stride, primitives=prims, pool_bn=False).double()
                fused = copy.deepcopy(naive)
                fused.impl = "fused"
                res = []
                for op in (naive, fused):
                    xx, ww = x.clone().requires_grad_(), w.clone().requires_grad_()
                    y = op(xx, ww)
                    res.append((y, torch.autograd.grad(y.square().sum(), [xx, ww, *op.parameters()])))
                assert torch.equal(res[0][0], res[1][0]), (name, shape, stride)
                for a, b in zip(res[1][1], res[0][1]):
                    torch.testing.assert_close(a, b, **TOL[torch.float64], msg=f"{name} {shape} stride {stride}")
                for a, b in zip(naive.buffers(), fused.buffers()):
                    assert torch.equal(a, b), (name, shape, stride)
                checked.add(name)
    assert {"sep_conv_3x3", "dil_conv_5x5", "max_pool_3x3", "none", "skip_connect"} <= checked
