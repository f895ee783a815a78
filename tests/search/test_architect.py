"""DARTS' architecture gradient against exact autograd (Liu et al. 2019, §2.3; quark0/darts cnn/architect.py)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from dnas import DARTS
from dnas.cells.darts import DartsSupernet
from dnas.ops import MixedOp


def _setup(seed=0):
    torch.manual_seed(seed)
    net = DartsSupernet(init_channels=2, num_classes=3, layers=3, in_channels=1).double()
    with torch.no_grad():
        for p in net.arch_parameters():
            p.copy_(torch.randn_like(p))  # away from uniform so the Hessian term matters
    xt, yt = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (4,))
    xv, yv = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (4,))
    return net, (xt, yt), (xv, yv)


def _naive_copy(net):
    """The same network with the naive mixed op (the default fused op has no double backward)."""
    net = copy.deepcopy(net)
    for m in net.modules():
        if isinstance(m, MixedOp):
            m.impl = "naive"
    return net


def _exact_unrolled(net, train, val, lr, momentum, wd, bufs):
    """d/dα L_val(w - lr(μ m + ∇w L_train(w, α) + λ w), α), by double backward through the virtual step."""
    net = _naive_copy(net)
    names_w = [n for n, p in net.named_parameters() if not n.startswith("arch.")]
    names_a = [n for n, _ in net.named_arch_parameters()]
    params = dict(net.named_parameters())
    w = [params[n].detach().clone().requires_grad_(True) for n in names_w]
    a = [params[n].detach().clone().requires_grad_(True) for n in names_a]
    buffers = {k: v.clone() for k, v in net.named_buffers()}

    def loss(wl, al, batch):
        p = dict(zip(names_w, wl)) | dict(zip(names_a, al))
        return F.cross_entropy(functional_call(net, (p, buffers), (batch[0],)), batch[1])

    g = torch.autograd.grad(loss(w, a, train), w, create_graph=True)
    w_new = [wi - lr * (momentum * m + gi + wd * wi) for wi, gi, m in zip(w, g, bufs)]
    return [t.detach() for t in torch.autograd.grad(loss(w_new, a, val), a)]


def test_second_order_matches_exact_hypergradient():
    # The architect runs on the default (fused) mixed op; the exact reference double-differentiates a naive copy.
    # In fp64 with a small finite-difference step the central difference is exact to ~1e-10, so any wrong sign,
    # missing term (momentum, weight decay, ξ = lr) or wrong ε scaling fails. (At the paper's r = 0.01 the
    # finite-difference error on this tiny ReLU network is of the order of the gradient itself: that is the
    # approximation of the method, not of this code.)
    net, train, val = _setup()
    module = DARTS(net, unrolled=True, unrolled_r=1e-6)
    weights = net.weight_parameters()
    lr, momentum, wd = 0.5, 0.9, 3e-4  # a large lr makes the Hessian term large relative to the tolerance
    opt = torch.optim.SGD(weights, lr=lr, momentum=momentum, weight_decay=wd)
    g = torch.Generator().manual_seed(1)
    for p in weights:  # a non-zero momentum buffer, as after a few weight steps
        opt.state[p]["momentum_buffer"] = 0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype)
    bufs = [opt.state[p]["momentum_buffer"] for p in weights]
    before = [p.detach().clone() for p in net.parameters()]

    grads, _, _ = module.arch_gradient_unrolled(opt, train, val, net.arch_parameters())
    exact = _exact_unrolled(net, train, val, lr, momentum, wd, bufs)
    first = torch.autograd.grad(F.cross_entropy(net(val[0]), val[1]), net.arch_parameters())

    for ours, ref, fo in zip(grads, exact, first):
        scale = ref.abs().max()
        assert (ours - ref).abs().max() < 1e-7 * scale
        # the second-order correction is far larger than the tolerance, so a wrong sign or a missing term fails
        assert (ref - fo).abs().max() > 0.1 * scale
    for p, b in zip(net.parameters(), before):  # weights restored bit-exactly
        assert torch.equal(p.detach(), b)


def test_second_order_without_momentum_buffer_treats_it_as_zero():
    net, train, val = _setup(1)
    module = DARTS(net, unrolled=True, unrolled_r=1e-6)
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.3, momentum=0.9, weight_decay=1e-3)
    grads, _, _ = module.arch_gradient_unrolled(opt, train, val, net.arch_parameters())
    zeros = [torch.zeros_like(p) for p in net.weight_parameters()]
    exact = _exact_unrolled(net, train, val, 0.3, 0.9, 1e-3, zeros)
    for ours, ref in zip(grads, exact):
        assert (ours - ref).abs().max() < 1e-7 * ref.abs().max()


def test_first_order_arch_step_uses_plain_autograd_gradient():
    net, train, val = _setup(2)
    module = DARTS(net, unrolled=False)
    loss, _, _ = module.arch_loss(*val)
    ours = torch.autograd.grad(loss, net.arch_parameters())
    ref = torch.autograd.grad(F.cross_entropy(net(val[0], net.edge_weights()), val[1]), net.arch_parameters())
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("unrolled", [False, True])
def test_arch_step_moves_only_alpha_and_weight_step_only_weights(unrolled):
    net, train, val = _setup(3)
    module = DARTS(net, unrolled=unrolled)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=0.1)
    w_before = [p.detach().clone() for p in net.weight_parameters()]
    a_before = [p.detach().clone() for p in net.arch_parameters()]
    a_opt.zero_grad()
    if unrolled:
        grads, _, _ = module.arch_gradient_unrolled(w_opt, train, val, net.arch_parameters())
    else:
        grads = torch.autograd.grad(module.arch_loss(*val)[0], net.arch_parameters())
    for p, gr in zip(net.arch_parameters(), grads):
        p.grad = gr
    a_opt.step()
    assert all(torch.equal(p, b) for p, b in zip(net.weight_parameters(), w_before))
    assert all(not torch.equal(p, b) for p, b in zip(net.arch_parameters(), a_before))
