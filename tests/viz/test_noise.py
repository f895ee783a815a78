"""The random-walk null of the verdict: against the closed form of SGD on Gaussian noise, and in a fit."""

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

import dnas
from dnas.callbacks import AlphaPlots
from dnas.cells.darts import DartsSupernet
from dnas.data import DigitsDataModule
from dnas.genotypes import CellGenotype, Edge, Genotype
from dnas.viz.alpha import GroupInfo, edge_entropy
from dnas.viz.noise import NoiseTest, count_decided, noise_test, optimizer_factory
from dnas.viz.verdict import verdict

K, E = 4, 6


def sgd(lr):
    return lambda params: torch.optim.SGD(params, lr=lr)


def test_sgd_null_matches_the_closed_form():
    """SGD on iid N(0, r_t²) gradients ends at α_0 + N(0, lr² Σ r_t²) per entry; entropy and decided count follow."""
    rms, lr = [0.5, 1.0, 2.0] * 10, 0.3
    initial = np.full((E, K), 1.0 / K)
    sd = lr * math.sqrt(sum(r * r for r in rms))
    rng = np.random.default_rng(1)
    alpha = rng.normal(0.0, sd, size=(200_000, K))
    p = np.exp(alpha) / np.exp(alpha).sum(-1, keepdims=True)
    p_decided = float((p.max(-1) >= 2.0 / K).mean())  # per edge, by the closed form
    entropy = float(-(p * np.log(p)).sum(-1).mean())
    final = initial.copy()
    t = noise_test(initial, final, rms, sgd(lr), factor=2.0, draws=4000, seed=0)
    assert t.steps == 30 and t.edges == E and t.observed == 0 and t.entropy == pytest.approx(math.log(K))
    assert t.hits == 4000 and t.p_value == 1.0  # noise always ends further from uniform than α that did not move
    assert t.null_mean == pytest.approx(E * p_decided, rel=0.03)
    assert t.null_entropy == pytest.approx(entropy, rel=0.01)


def test_p_value_separates_travel_beyond_noise_from_travel_within_it():
    initial = np.full((E, K), 1.0 / K)
    final = np.full((E, K), 0.02)
    final[:, 0] = 0.94  # every edge decided
    far = noise_test(initial, final, [1e-3] * 20, sgd(0.01), factor=2.0, draws=199)
    assert far.observed == E and far.hits == 0 and far.p_value == pytest.approx(1 / 200) and far.beyond_noise
    assert far.summary().startswith("beyond noise: 6 free edges at mean entropy 0.293 with 6 decided")
    loud = noise_test(initial, final, [50.0] * 20, sgd(0.5), factor=2.0, draws=199)  # noise decides every edge too
    assert loud.null_mean == pytest.approx(E, abs=0.1) and loud.p_value > 0.9 and not loud.beyond_noise
    # the count saturates (6 of 6 either way); the entropy still ranks: noise ends nearer one-hot than this search
    assert loud.null_entropy < loud.entropy


def test_only_free_edges_are_counted_and_no_steps_means_no_test():
    initial = np.full((E, K), 1.0 / K)
    final = np.full((E, K), 1.0 / K)
    final[0] = [1.0, 0, 0, 0]  # fixed by selection
    final[1] = [0.5, 0.5, 0, 0]  # ops removed
    t = noise_test(initial, final, [1.0] * 3, sgd(0.1), factor=2.0, draws=10)
    assert t.edges == E - 2
    assert noise_test(initial, final, [], sgd(0.1), factor=2.0) is None
    assert noise_test(initial, np.tile([1.0, 0, 0, 0], (E, 1)), [1.0], sgd(0.1), factor=2.0) is None
    rows = np.array([[0.5, 0.5, 0, 0], [0.4, 0.2, 0.2, 0.2]])
    assert int(count_decided(rows, 2.0)) == 1
    expected = (math.log(2) + 0.4 * math.log(2.5) + 0.6 * math.log(5)) / 2
    assert float(edge_entropy(rows).mean()) == pytest.approx(expected)


def test_optimizer_factory_rebuilds_the_group_hyperparameters():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.7}], lr=0.1, betas=(0.5, 0.999), weight_decay=1e-3)
    torch.optim.lr_scheduler.StepLR(opt, step_size=1)  # adds initial_lr, which Adam's constructor does not take
    new = optimizer_factory(opt, b)([torch.nn.Parameter(torch.zeros(3))])
    assert isinstance(new, torch.optim.Adam)
    g = new.param_groups[0]
    assert g["lr"] == 0.7 and g["betas"] == (0.5, 0.999) and g["weight_decay"] == 1e-3


def test_a_decided_cell_within_noise_is_said_so():
    edges = ((0, 1), (0, 2), (1, 2))
    groups = {"cell": GroupInfo("cell", edges, ("a", "b", "c", "d"))}
    g = Genotype("hand", {"cell": CellGenotype(tuple(Edge("a", s, d) for s, d in edges), (2,))})
    w = np.full((3, 4), 0.1)
    w[:, 0] = 0.7
    within = NoiseTest(entropy=0.9, null_entropy=0.8, observed=3, null_mean=2.6, edges=3, hits=122, steps=48, draws=200)
    v = verdict(g, {"cell": w}, groups, noise={"cell": within})
    assert v.status == v.cells[0].status == "within noise"
    assert "'cell' entropy 0.900, noise as far in 122 of 200 draws" in v.warning()
    assert "within noise: 3 free edges at mean entropy 0.900 with 3 decided" in v.lines()[0]
    beyond = NoiseTest(entropy=0.9, null_entropy=1.3, observed=3, null_mean=0.2, edges=3, hits=1, steps=48, draws=200)
    assert verdict(g, {"cell": w}, groups, noise={"cell": beyond}).status == "decided"
    assert verdict(g, {"cell": w}, groups).status == "decided"  # no null: the criterion alone


def test_fit_records_one_gradient_scale_per_alpha_step_and_tests_each_cell(tmp_path):
    pl.seed_everything(0)
    net = DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1)
    cb = AlphaPlots(report=False, every_n_epochs=5)
    trainer = pl.Trainer(
        max_epochs=2, limit_train_batches=3, limit_val_batches=1, logger=CSVLogger(tmp_path), callbacks=[cb],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(dnas.DARTS(net), DigitsDataModule(batch_size=16))
    assert sorted(cb.grad_rms) == ["normal", "reduce"]
    assert all(len(v) == 6 and all(r > 0 and math.isfinite(r) for r in v) for v in cb.grad_rms.values())
    assert cb._grad_hook is None  # removed at the end of fit
    result, _ = cb.verdict(trainer, trainer.lightning_module)
    tests = {c.cell: c.noise for c in result.cells}
    assert tests["normal"].steps == 6 and tests["normal"].edges == 14
    assert any("random walk of the same 6 α steps" in line for line in result.lines())
    assert all(0 < t.entropy <= math.log(8) and 0 < t.null_entropy <= math.log(8) for t in tests.values())
    other = AlphaPlots()
    other.load_state_dict(cb.state_dict())
    assert other.grad_rms == cb.grad_rms
    cb.noise_draws = 0  # turned off: the criterion alone
    assert all(c.noise is None for c in cb.verdict(trainer, trainer.lightning_module)[0].cells)
    with pytest.raises(ValueError, match="noise_draws must be >= 0"):
        AlphaPlots(noise_draws=-1)
