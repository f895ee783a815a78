"""Every search algorithm, both selection callbacks, cost tables and export work on the new spaces (no space code)."""

import pytest
import pytorch_lightning as pl
import torch

import dnas
from dnas.callbacks import MagnitudeSelection, PerturbationSelection
from dnas.cells.conv1d import Conv1dSupernet
from dnas.cells.custom import SearchCell
from dnas.cells.edges import EdgeOptions
from dnas.cells.nb201 import NB201Supernet
from dnas.cells.tabular import TabularSupernet
from dnas.data import DigitsDataModule
from dnas.data.mnist1d import MNIST1DDataModule
from dnas.data.tabular import TabularDataModule
from dnas.export import build_model
from dnas.genotypes import Genotype
from dnas.latency import LatencyLoss, candidate_sites, measure_table
from dnas.ops import MIXED_OP_IMPLS

SPACES = {
    "tabular": (
        lambda **kw: TabularSupernet(in_features=13, num_classes=3, hidden=8, num_cells=1, **kw),
        lambda: TabularDataModule(dataset="wine", batch_size=16),
        (13,),
    ),
    "conv1d": (
        lambda **kw: Conv1dSupernet(channels=4, stages=1, **kw),
        lambda: MNIST1DDataModule(num_samples=100, batch_size=16),
        (1, 40),
    ),
    "nb201": (
        lambda **kw: NB201Supernet(init_channels=4, cells_per_stage=1, in_channels=1, **kw),
        lambda: DigitsDataModule(batch_size=16),
        (1, 8, 8),
    ),
}


def fit(module, dm, tmp_path, epochs=1, callbacks=()):
    trainer = pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
    )
    trainer.fit(module, datamodule=dm)
    return trainer


def check_export(supernet, shape):
    g = Genotype.from_json(supernet.genotype().to_json())
    net = build_model(g).eval()
    assert net(torch.randn(2, *shape)).shape[0] == 2


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize(
    "algorithm,space_kwargs,module_kwargs",
    [
        (
            "PCDARTS",
            dict(edge_options=EdgeOptions(partial_channels=2, edge_normalization=True)),
            dict(arch_warmup_epochs=0),
        ),
        ("SDDARTS", dict(), dict(num_teachers=1)),
        ("FBNet", dict(), dict(arch_warmup_epochs=0)),
        ("DARTS", dict(), dict(unrolled=True)),  # second order
    ],
)
def test_search_algorithms_run_on_every_space(tmp_path, space, algorithm, space_kwargs, module_kwargs):
    torch.manual_seed(0)
    make, make_dm, shape = SPACES[space]
    supernet = make(**space_kwargs)
    before = {n: p.detach().clone() for n, p in supernet.named_arch_parameters()}
    module = getattr(dnas, algorithm)(supernet, **module_kwargs)
    fit(module, make_dm(), tmp_path)
    moved = [n for n, p in supernet.named_arch_parameters() if not torch.equal(p.detach(), before[n])]
    assert "arch.cell.alpha" in moved
    if space_kwargs:
        assert "arch.cell.beta" in moved
    check_export(supernet, shape)
    if algorithm == "FBNet":  # FBNet's final="sample": architectures drawn from softmax(α), exported as well
        for g in module.sample_genotypes(2):
            assert build_model(g).eval()(torch.randn(2, *shape)).shape[0] == 2


def test_selection_callbacks_on_a_user_space(tmp_path):
    torch.manual_seed(0)
    make, make_dm, shape = SPACES["tabular"]
    supernet = make()
    pt = PerturbationSelection(start_epoch=1, interval=1, val_subset=16, tune_lr=None, exclude_ops=["none"])
    epochs = 1 + pt.tune_epochs(supernet)  # one search epoch, then one decision per epoch for the 6 edges
    mag = MagnitudeSelection(at_epoch=0)
    trainer = fit(dnas.DARTS(supernet), make_dm(), tmp_path, epochs, [mag, pt])
    assert mag.genotype is not None and mag.genotype.space == "tabular"
    assert bool(supernet.arch["cell"].fixed.all())  # every edge decided by perturbation
    chosen = Genotype.from_file(tmp_path / "genotype_perturbation.json")
    assert all(e.op != "none" for e in chosen.cells["cell"].edges)
    assert chosen.cells == supernet.genotype().cells  # the space's rule honours fixed edges
    net = build_model(chosen).eval()
    assert net(torch.randn(2, *shape)).shape == (2, 3)
    assert trainer.current_epoch == epochs


@pytest.mark.parametrize("space", sorted(SPACES))
def test_cost_tables_and_latency_loss(tmp_path, space):
    make, make_dm, shape = SPACES[space]
    supernet = make()
    x = torch.randn(1, *shape)
    sites = candidate_sites(supernet, x)
    n_cells = sum(isinstance(m, SearchCell) for m in supernet.modules())
    assert sorted(s.edge for s in sites) == sorted(list(range(6)) * n_cells)  # one mixed op per edge and cell
    table = measure_table(supernet, x, metric="params", progress=False, sites=sites)
    loss = LatencyLoss(table, form="add", target=1000.0)
    # one-hot weights: the expected cost is the parameter count of the chosen op on every edge, read off the modules
    K = len(supernet.candidate_names)
    for k in range(K):
        w = {"cell": torch.eye(K)[k].repeat(6, 1)}
        modules = dict(supernet.named_modules())
        want = sum(sum(p.numel() for p in modules[s.module]._ops[k].parameters()) for s in sites)
        assert float(loss.expected(supernet, w)) == pytest.approx(want)
    module = dnas.DARTS(supernet, latency_loss=loss)
    fit(module, make_dm(), tmp_path)
    check_export(supernet, shape)


@pytest.mark.parametrize("space", sorted(SPACES))
def test_exported_network_traces_with_torch_export(space):
    make, _, shape = SPACES[space]
    net = build_model(make().genotype()).eval()
    x = torch.randn(2, *shape)
    program = torch.export.export(net, (x,))
    torch.testing.assert_close(program.module()(x), net(x))


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize("impl", [i for i in MIXED_OP_IMPLS if i != "naive"])
def test_mixed_op_implementations_agree_on_every_space(space, impl):
    make, _, shape = SPACES[space]
    torch.manual_seed(0)
    naive, other = make(), make(edge_options=EdgeOptions(mixed_op_impl=impl))
    other.load_state_dict(naive.state_dict())
    x = torch.randn(4, *shape)
    y_naive, y_other = naive(x), other(x)
    torch.testing.assert_close(y_other, y_naive, atol=1e-5, rtol=1e-5)
    y_naive.square().mean().backward()
    y_other.square().mean().backward()
    torch.testing.assert_close(other.alpha("cell").grad, naive.alpha("cell").grad, atol=1e-5, rtol=1e-4)
