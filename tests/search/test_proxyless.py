"""ProxylessNAS: which ops run in each step, the binary-gate α gradient against the paper's formula, the rescaling."""

import pytest
import pytorch_lightning as pl
import torch

import dnas
from dnas.cells.nb201 import NB201Supernet
from dnas.data import DigitsDataModule
from dnas.ops import MixedOp
from dnas.ops.binary_gates import rescale_sampled, sample_single_paths, sample_two_paths
from dnas.ops.darts import DARTS_PRIMITIVES


def _param_grads(op):
    return [q.grad for q in op.parameters()]


def test_the_weight_step_runs_one_path_and_the_arch_step_two(small_space, count_calls):
    torch.manual_seed(0)
    make, shape = small_space
    supernet = make()
    module = dnas.ProxylessNAS(supernet).train()
    assert module.needs_unused_parameters
    mixed = {n: m for n, m in supernet.named_modules() if isinstance(m, MixedOp)}
    assert mixed and all(m.sampled == "binary_gate" for m in mixed.values())
    # weight step: one path per edge, constant gates (α is not trained by the weight step)
    calls = count_calls(supernet)
    weights = module.sample_weights()
    assert all(not w.requires_grad and torch.equal(w.sum(-1), torch.ones(w.shape[0])) for w in weights.values())
    supernet(torch.randn(4, *shape), weights).square().mean().backward()
    assert all(len(ks) == 1 for ks in calls.values()), calls
    for name, ks in calls.items():
        for j, op in enumerate(mixed[name]._ops):
            if j not in ks:
                assert all(g is None for g in _param_grads(op)), (name, j)
    # architecture step: the two sampled paths of each edge, no other; only the open one is differentiated
    supernet.zero_grad(set_to_none=True)
    calls = count_calls(supernet)
    gates, gate_probs, sampled = module.binary_gates()
    supernet(torch.randn(4, *shape), gates).square().mean().backward()
    assert all(len(ks) == 2 for ks in calls.values()), calls
    for name, ks in calls.items():
        differentiated = [j for j, op in enumerate(mixed[name]._ops) if any(g is not None for g in _param_grads(op))]
        assert set(differentiated) <= set(ks) and len(differentiated) <= 1, (name, ks)
    for g, p in ((g, supernet.alpha(g)) for g in supernet.arch_groups):
        assert bool(p.grad[sampled[g]].abs().sum() > 0), g
        assert torch.equal(p.grad[~sampled[g]], torch.zeros_like(p.grad[~sampled[g]])), g
        assert torch.equal(sampled[g].sum(-1), torch.full((p.shape[0],), 2))
        torch.testing.assert_close(gate_probs[g].sum(-1), torch.ones(p.shape[0]))


def test_the_alpha_gradient_is_the_binary_gate_formula():
    """Exact autograd through the mixed op against Cai et al. 2019, Eq. 4 restricted to the two sampled paths:
    ∂L/∂α_i = Σ_j ∂L/∂g_j p̃_j (δ_ij − p̃_i), ∂L/∂g_j = ⟨∂L/∂out, op_j(x)⟩, computed by hand from the plain ops."""
    torch.manual_seed(1)
    prims = [p for p in DARTS_PRIMITIVES if p != "none"]
    K = len(prims)
    x, r = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    naive = MixedOp(4, 1, primitives=prims, impl="naive").train()
    gated = MixedOp(4, 1, primitives=prims, impl="fused", sampled="binary_gate").train()
    gated.load_state_dict(naive.state_dict())
    calls = []
    for j, op in enumerate(gated._ops):
        op.register_forward_hook(lambda m, i, o, j=j: calls.append(j))
    for trial in range(5):
        alpha = torch.randn(1, K, requires_grad=True)
        gen = torch.Generator().manual_seed(trial)
        gates, _, sampled = sample_two_paths(alpha, torch.softmax(alpha, -1).detach(), gen)
        pair = sampled[0].nonzero().flatten().tolist()
        opened = int(gates[0].detach().argmax())
        assert len(pair) == 2 and opened in pair and float(gates[0, opened].detach()) == 1.0
        calls.clear()
        gated.zero_grad(set_to_none=True)
        out = gated(x, gates[0])
        assert sorted(calls) == pair
        with torch.no_grad():  # the value is the open path's output (binary gates), bitwise
            assert torch.equal(out, naive._ops[opened](x))
        calls.clear()
        (out * r).sum().backward()
        with torch.no_grad():
            dg = {j: float((r * naive._ops[j](x)).sum(dtype=torch.float64)) for j in pair}
        p2 = torch.softmax(alpha.detach()[0, pair].double(), -1)
        expected = torch.zeros(K, dtype=torch.float64)
        for a, i in enumerate(pair):
            for b, j in enumerate(pair):
                expected[i] += dg[j] * float(p2[b]) * (float(a == b) - float(p2[a]))
        torch.testing.assert_close(alpha.grad[0].double(), expected, rtol=1e-4, atol=1e-5)
        assert torch.equal(alpha.grad[0, ~sampled[0]], torch.zeros(K - 2))
        closed = next(j for j in pair if j != opened)
        assert all(g is None for g in _param_grads(gated._ops[closed]))  # run without autograd


def test_a_row_of_only_sampled_paths_still_takes_the_gate_path():
    """K = 2: both entries nonzero, yet a binary-gate row (one negative) must not be read as a softmax mixture."""
    torch.manual_seed(0)
    op = MixedOp(4, 1, primitives=["sep_conv_3x3", "dil_conv_3x3"], sampled="binary_gate").train()
    x = torch.randn(1, 4, 5, 5)
    out = op(x, torch.tensor([-0.3, 1.0]))
    assert torch.equal(out, op._ops[1](x))
    with pytest.raises(ValueError, match="binary_gate"):
        MixedOp(4, 1, sampled="gates")


def test_single_paths_follow_the_probabilities_and_the_selection():
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.1, 0.2, 0.7, 0.0]).repeat(20000, 1)
    freq = sample_single_paths(probs, gen).mean(0)
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.7, 0.0]), atol=0.015, rtol=0)
    # fixed edge / single op left: that op, a constant; removed edge: zeros; never a masked op
    alpha = torch.randn(3, 4, requires_grad=True)
    rows = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.5, 0.0]])
    gates, gate_probs, sampled = sample_two_paths(alpha, rows, gen)
    assert torch.equal(gates[0].detach(), rows[0]) and torch.equal(gates[1].detach(), rows[1])
    assert torch.equal(sampled[:2], torch.zeros(2, 4, dtype=torch.bool))
    assert torch.equal(sampled[2], torch.tensor([True, False, True, False]))


def test_the_rescaling_keeps_the_unsampled_probabilities_and_the_sampled_ratio():
    torch.manual_seed(0)
    before = torch.randn(6, 5)
    sampled = torch.zeros(6, 5, dtype=torch.bool)
    for e in range(5):  # the last row has no sampled path (a fixed edge): untouched
        sampled[e, torch.randperm(5)[:2]] = True
    after = before + sampled * torch.randn(6, 5)  # an update that moved the two sampled α only
    stepped = after.clone()
    rescale_sampled(after, before, sampled)
    p0, p1 = torch.softmax(before, -1), torch.softmax(after, -1)
    torch.testing.assert_close(p1[~sampled], p0[~sampled], rtol=1e-6, atol=0)
    for e in range(5):  # the reference's offset log(Σ exp(α_new) / Σ exp(α_old)) over the two, by hand
        i, j = sampled[e].nonzero().flatten().tolist()
        offset = torch.log((stepped[e, i].exp() + stepped[e, j].exp()) / (before[e, i].exp() + before[e, j].exp()))
        torch.testing.assert_close(after[e, [i, j]], stepped[e, [i, j]] - offset)
    assert torch.equal(after[5], before[5])


class _Record(pl.Callback):
    """α before and after each batch, and the paths the module sampled for its architecture step."""

    def __init__(self):
        self.steps = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.before = {g: module.supernet.alpha(g).detach().clone() for g in module.supernet.arch_groups}
        draw = type(module).binary_gates.__get__(module)

        def recording():
            out = draw()
            self.sampled = out[2]
            return out

        module.binary_gates = recording

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        after = {g: module.supernet.alpha(g).detach().clone() for g in module.supernet.arch_groups}
        self.steps.append((self.before, after, self.sampled))


def test_a_search_step_moves_only_the_sampled_alpha_and_keeps_the_others_probabilities(tmp_path, quiet_trainer):
    torch.manual_seed(0)
    supernet = NB201Supernet(init_channels=4, cells_per_stage=1, in_channels=1)
    module = dnas.ProxylessNAS(supernet, a_optimizer=lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.0, 0.999)))
    record = _Record()
    quiet_trainer(tmp_path, 2, callbacks=[record], enable_checkpointing=False).fit(
        module, DigitsDataModule(batch_size=8)
    )
    assert len(record.steps) == 4
    for before, after, sampled in record.steps:
        for g in before:
            s = sampled[g]
            assert torch.equal(after[g][~s], before[g][~s])  # unsampled α keep their values
            assert not torch.equal(after[g][s], before[g][s])  # the two sampled ones moved
            p0, p1 = torch.softmax(before[g], -1), torch.softmax(after[g], -1)
            torch.testing.assert_close(p1[~s], p0[~s], rtol=1e-5, atol=0)  # the rescaling
    genotype = module.current_genotype()
    assert genotype.meta["algorithm"] == "ProxylessNAS" and genotype.space == "nb201"


def test_gumbel_arguments_are_refused():
    net = NB201Supernet(init_channels=4, cells_per_stage=1, in_channels=1)
    for name in ("temperature", "hard", "single_path"):
        with pytest.raises(ValueError, match="binary gates"):
            dnas.ProxylessNAS(net, **{name: 1})
