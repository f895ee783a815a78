"""HessianEigenvalue: power iteration on finite-difference Hessian-vector products against the exact spectrum."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

import dnas
from dnas.callbacks import HessianEigenvalue
from dnas.callbacks.sharpness import dominant_eigenvalue, hessian_vector_product
from dnas.cells.darts import DartsSupernet
from dnas.cells.edges import EdgeOptions
from dnas.cells.tabular import TabularSupernet
from dnas.data.tabular import TabularDataModule


def tiny_problem():
    torch.manual_seed(0)
    net = TabularSupernet(in_features=5, num_classes=3, hidden=6, num_cells=1).double().train()
    with torch.no_grad():  # away from uniform, so the Hessian is not degenerate
        for group in net.arch_groups.values():
            group.alpha.normal_(0, 1.0)
    x, y = torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 3, (32,))
    alphas = [g.alpha for g in net.arch_groups.values()]
    return net, alphas, lambda: F.cross_entropy(net(x, net.edge_weights()), y)


def exact_hessian(loss_fn, alphas):
    grads = torch.autograd.grad(loss_fn(), alphas, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    rows = [torch.cat([h.reshape(-1) for h in torch.autograd.grad(g, alphas, retain_graph=True)]) for g in flat]
    return torch.stack(rows).detach()


def test_power_iteration_matches_exact_eigendecomposition():
    net, alphas, loss = tiny_problem()
    hessian = exact_hessian(loss, alphas)
    assert torch.allclose(hessian, hessian.T, atol=1e-10)
    eig = torch.linalg.eigvalsh(hessian)
    want = float(eig[eig.abs().argmax()])
    assert abs(want) > 1e-3 and eig.abs().sort().values[-2] < 0.95 * abs(want)  # a real, separated top eigenvalue
    before = [a.detach().clone() for a in alphas]
    # one product equals H v (central difference, fp64)
    v = torch.randn(hessian.shape[0], dtype=torch.float64)
    v /= v.norm()
    assert torch.allclose(hessian_vector_product(loss, alphas, v, 1e-5), hessian @ v, rtol=1e-5, atol=1e-7)
    value, vec, used = dominant_eigenvalue(
        loss, alphas, iterations=500, tolerance=1e-12, eps=1e-5, generator=torch.Generator().manual_seed(1)
    )
    assert value == pytest.approx(want, rel=1e-4) and used > 2
    assert torch.allclose(hessian @ vec, want * vec, atol=1e-3 * abs(want))
    assert all(torch.equal(a, b) for a, b in zip(alphas, before))  # α restored bit for bit


def run(tmp_path, callbacks):
    pl.seed_everything(0)
    net = TabularSupernet(in_features=13, num_classes=3, hidden=8, num_cells=1)
    model = dnas.DARTS(net)
    trainer = pl.Trainer(
        max_epochs=2, limit_train_batches=2, limit_val_batches=1, logger=False, callbacks=callbacks,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, TabularDataModule(dataset="wine", batch_size=16))
    return trainer, net


def test_fused_mixed_op_gives_the_naive_hessian_products():
    """The fused op has a hand-written first derivative only: the gradient-difference product works on it."""
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    values = []
    for impl in ("naive", "fused"):
        torch.manual_seed(0)
        net = DartsSupernet(
            init_channels=4, num_classes=10, layers=1, in_channels=1, edge_options=EdgeOptions(mixed_op_impl=impl)
        ).train()
        alphas = [g.alpha for g in net.arch_groups.values()]
        v = torch.randn(sum(a.numel() for a in alphas), generator=torch.Generator().manual_seed(0))
        v /= v.norm()  # (not constant per row: softmax ignores a shift of a whole row)
        values.append(hessian_vector_product(lambda net=net: F.cross_entropy(net(x), y), alphas, v, 1e-2))
    assert values[0].abs().max() > 0 and torch.allclose(values[0], values[1], rtol=1e-3, atol=1e-5)


def test_callback_logs_every_epoch_and_leaves_the_search_unchanged(tmp_path):
    cb = HessianEigenvalue(num_samples=32, iterations=5)
    trainer, net = run(tmp_path, [cb])
    assert [e for e, _ in cb.history] == [1, 2] and all(v == v and abs(v) < 1e6 for _, v in cb.history)
    assert float(trainer.callback_metrics["arch/hessian_eigenvalue"]) == pytest.approx(cb.history[-1][1])
    assert 1 <= float(trainer.callback_metrics["arch/hessian_products"]) <= 5
    _, plain = run(tmp_path, [])
    # measuring restores BN statistics and α and draws from its own generator: the search is bitwise the same
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), plain.state_dict().values()))
    other = HessianEigenvalue()
    other.load_state_dict(cb.state_dict())
    assert other.history == cb.history
    with pytest.raises(ValueError, match="num_samples"):
        HessianEigenvalue(num_samples=0)


def test_callback_eigenvalue_is_exact_on_a_relu_max_pool_supernet():
    """A float32 conv1d supernet (ReLU, max pool, BN): the logged eigenvalue is the exact Hessian's dominant one.

    Central differences of α gradients step activations across ReLU/max-pool kinks, so the matrix they imply is
    neither this Hessian nor symmetric; the callback takes exact double-backward products unless the op is fused.
    """
    from types import SimpleNamespace

    from dnas.cells.conv1d import Conv1dSupernet

    torch.manual_seed(0)
    net = Conv1dSupernet(channels=4, cells_per_stage=1, stages=2, num_classes=3).train()
    with torch.no_grad():
        for group in net.arch_groups.values():
            group.alpha.normal_(0, 1.0)
    x, y = torch.randn(64, 1, 40), torch.randint(0, 3, (64,))
    alphas = [g.alpha for g in net.arch_groups.values()]
    hessian = exact_hessian(lambda: F.cross_entropy(net(x, net.edge_weights()), y), alphas).double()
    eig = torch.linalg.eigvalsh((hessian + hessian.T) / 2)
    want = float(eig[eig.abs().argmax()])
    assert abs(want) > 1e-3 and eig.abs().sort().values[-2] < 0.95 * abs(want)  # a separated top eigenvalue
    trainer = SimpleNamespace(datamodule=SimpleNamespace(val_dataloader=lambda: [(x, y)]))
    cb = HessianEigenvalue(num_samples=64, iterations=300, tolerance=1e-7)
    value, used = cb.measure(trainer, dnas.DARTS(net))
    assert value == pytest.approx(want, rel=1e-3) and used > 2  # central differences: -0.0557 against -0.00634
    assert cb.product_method(net) == "autograd"
    with pytest.raises(ValueError, match="method"):
        HessianEigenvalue(method="exact")
    fused = DartsSupernet(init_channels=4, num_classes=10, layers=1, edge_options=EdgeOptions(mixed_op_impl="fused"))
    assert cb.product_method(fused) == "difference"
