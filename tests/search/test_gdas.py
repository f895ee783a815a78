"""GDAS: single-path execution, the straight-through α gradient, the τ schedule and exact resume."""

import pytest
import pytorch_lightning as pl
import torch

import dnas
from dnas.callbacks import TemperatureSchedule
from dnas.cells.nb201 import NB201Supernet
from dnas.data import DigitsDataModule
from dnas.errors import ConfigError
from dnas.ops import MixedOp, gumbel_softmax
from dnas.ops.darts import DARTS_PRIMITIVES


def test_only_the_sampled_op_runs_and_alpha_gets_a_gradient(small_space, count_calls):
    torch.manual_seed(0)
    make, shape = small_space
    supernet = make()
    module = dnas.GDAS(supernet).train()
    calls = count_calls(supernet)
    weights = module.sample_weights()
    out = supernet(torch.randn(4, *shape), weights)
    ran = [ks for ks in calls.values() if ks]
    assert ran, "no mixed op ran"
    assert all(len(ks) == 1 for ks in ran), calls  # one candidate per edge call, never the other K - 1
    # the op that ran is the sampled one (the nonzero entry of its row)
    for g, w in weights.items():
        assert torch.equal((w != 0).sum(-1), torch.ones(w.shape[0], dtype=torch.long)), g
    out.square().mean().backward()
    for name, p in supernet.named_arch_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    # unsampled candidates' weights took part in no computation
    mixed = dict(supernet.named_modules())
    for name, ks in calls.items():
        for j, op in enumerate(mixed[name]._ops):
            if j not in ks:
                assert all(q.grad is None for q in op.parameters()), (name, j)


def test_sampled_mixed_op_value_and_straight_through_gradient_match_the_formula():
    """Output = the sampled op times its weight (bitwise the all-path sum); ∂L/∂α from the chain rule by hand:
    ∂L/∂h_k = <r, op_k(x)> for the sampled k, Σ r for the others (GDAS reference), α through softmax((α + g) / τ)."""
    torch.manual_seed(1)
    prims = [p for p in DARTS_PRIMITIVES if p != "none"]
    x, r, tau = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6), 0.7
    naive = MixedOp(4, 1, primitives=prims, impl="naive").train()
    sampled = MixedOp(4, 1, primitives=prims, impl="fused", sampled=True).train()
    sampled.load_state_dict(naive.state_dict())
    alpha = torch.randn(len(prims), requires_grad=True)
    gen = torch.Generator().manual_seed(3)
    h = gumbel_softmax(alpha, tau, hard=True, generator=gen)
    k = int(h.detach().argmax())
    assert int((h != 0).sum()) == 1
    calls = []
    for j, op in enumerate(sampled._ops):
        op.register_forward_hook(lambda mod, inp, out, j=j: calls.append(j))
    out = sampled(x, h)
    assert calls == [k]
    with torch.no_grad():
        assert torch.equal(out, naive(x, h.detach()))
    (out * r).sum().backward()
    # by hand
    gen = torch.Generator().manual_seed(3)
    g = -torch.empty(len(prims)).exponential_(generator=gen).clamp_min_(torch.finfo(torch.float32).tiny).log()
    y = torch.softmax((alpha.detach() + g) / tau, -1)
    with torch.no_grad():
        dh = torch.full((len(prims),), float(r.sum()))
        dh[k] = float((r * naive._ops[k](x)).sum())
    expected = y * (dh - (y * dh).sum()) / tau
    torch.testing.assert_close(alpha.grad, expected, rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for j, op in enumerate(sampled._ops) if j != k for p in op.parameters())


def test_rows_without_zeros_take_the_impl_path():
    torch.manual_seed(0)
    op = MixedOp(4, 1, impl="naive", sampled=True)
    calls = []
    for j, cand in enumerate(op._ops):
        cand.register_forward_hook(lambda mod, inp, out, j=j: calls.append(j))
    op(torch.randn(1, 4, 5, 5), torch.softmax(torch.randn(len(op._ops)), -1))
    assert calls == list(range(len(op._ops)))


def test_tau_decays_linearly_from_tau_max_to_tau_min(tmp_path, quiet_trainer):
    torch.manual_seed(0)
    module = dnas.GDAS(NB201Supernet(init_channels=4, cells_per_stage=1, in_channels=1), tau_max=10, tau_min=0.1)
    seen = []

    class Watch(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append(float(pl_module.temperature))

    quiet_trainer(tmp_path, 3, callbacks=[Watch()], enable_checkpointing=False).fit(
        module, DigitsDataModule(batch_size=8)
    )
    assert seen == pytest.approx([10.0, 5.05, 0.1])
    assert module.supernet.genotype().space == "nb201"


def test_a_temperature_schedule_callback_is_refused(tmp_path, quiet_trainer):
    module = dnas.GDAS(NB201Supernet(init_channels=4, cells_per_stage=1, in_channels=1))
    trainer = quiet_trainer(tmp_path, 1, callbacks=[TemperatureSchedule()], enable_checkpointing=False)
    with pytest.raises(ConfigError, match="TemperatureSchedule"):
        trainer.fit(module, DigitsDataModule(batch_size=8))


def test_gdas_specific_arguments_are_checked():
    net = NB201Supernet(init_channels=4, cells_per_stage=1, in_channels=1)
    with pytest.raises(ValueError, match="tau_min"):
        dnas.GDAS(net, tau_max=0.1, tau_min=1.0)
    with pytest.raises(ValueError, match="hard"):
        dnas.GDAS(net, hard=False)


class _StopAfterFirstEpoch(pl.Callback):
    """Interrupt a 2-epoch run after epoch 0 (max_epochs stays 2: the cosine and τ schedules depend on it)."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def _search(trainer_factory, algorithm, tmp_path, stop=False, ckpt_path=None):
    torch.manual_seed(0)
    module = algorithm(NB201Supernet(init_channels=4, cells_per_stage=1, in_channels=1), seed=5)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = trainer_factory(tmp_path, 2, callbacks=[ckpt, *([_StopAfterFirstEpoch()] if stop else [])])
    torch.manual_seed(1)
    trainer.fit(module, DigitsDataModule(batch_size=8), ckpt_path=ckpt_path)
    return module


@pytest.mark.parametrize("name", ["GDAS", "ProxylessNAS"])
def test_a_resumed_search_samples_and_ends_exactly_as_an_uninterrupted_one(tmp_path, quiet_trainer, name):
    """Both single-path searches (GDAS, ProxylessNAS) keep their sampling generator in the checkpoint."""
    algorithm = getattr(dnas, name)
    straight = _search(quiet_trainer, algorithm, tmp_path / "a")
    _search(quiet_trainer, algorithm, tmp_path / "b", stop=True)
    ckpt = torch.load(tmp_path / "b" / "last.ckpt", weights_only=False)
    assert algorithm.rng_key in ckpt
    resumed = _search(quiet_trainer, algorithm, tmp_path / "c", ckpt_path=tmp_path / "b" / "last.ckpt")
    for (pname, p), q in zip(straight.supernet.named_arch_parameters(), resumed.supernet.arch_parameters()):
        assert torch.equal(p, q), pname
    assert torch.equal(straight.generator.get_state(), resumed.generator.get_state())
    # the stream is what moves α: a different seed ends elsewhere
    other = algorithm(NB201Supernet(init_channels=4, cells_per_stage=1, in_channels=1), seed=6)
    assert not torch.equal(other.generator.get_state(), straight.generator.get_state())
    assert dnas.GDAS.rng_key == "dnas_gdas_rng"  # checkpoints written before the key became a class attribute


@pytest.mark.parametrize("name", ["GDAS", "ProxylessNAS"])
def test_selection_callbacks_drive_a_single_path_search_on_a_user_space(tmp_path, small_spaces, quiet_trainer, name):
    from dnas.callbacks import MagnitudeSelection, PerturbationSelection
    from dnas.data.tabular import TabularDataModule

    torch.manual_seed(0)
    supernet = small_spaces["tabular"][0]()
    pt = PerturbationSelection(start_epoch=1, interval=1, val_subset=16, tune_lr=None, exclude_ops=["none"])
    epochs = 1 + pt.tune_epochs(supernet)
    mag = MagnitudeSelection(at_epoch=0)
    trainer = quiet_trainer(tmp_path, epochs, callbacks=[mag, pt], enable_checkpointing=False)
    trainer.fit(getattr(dnas, name)(supernet), TabularDataModule(dataset="wine", batch_size=16))
    assert mag.genotype is not None and mag.genotype.space == "tabular"
    assert bool(supernet.arch["cell"].fixed.all())
    assert supernet.genotype().cells == dnas.Genotype.from_file(tmp_path / "genotype_perturbation.json").cells


@pytest.mark.parametrize("name, algorithm", [("quickstart_gdas", "GDAS"), ("quickstart_proxyless", "ProxylessNAS")])
def test_the_single_path_quickstarts_run_through_the_cli_and_export(tmp_path, run_cli, name, algorithm):
    from pathlib import Path

    from dnas.cells.nb201 import genotype_to_nb201_str
    from dnas.export import build_model

    config = Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml"
    args = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    args += ["--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.default_root_dir", str(tmp_path)]
    code, _, err = run_cli(["fit", "--config", str(config), *args, "--trainer.enable_progress_bar", "false"])
    assert code == 0, err
    run = tmp_path / name / "version_0"
    genotype = dnas.Genotype.from_file(run / "genotype.json")
    assert genotype.meta["algorithm"] == algorithm
    assert genotype_to_nb201_str(genotype).count("~") == 6
    assert build_model(genotype).eval()(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert ("arch/temperature" in (run / "metrics.csv").read_text().splitlines()[0]) == (algorithm == "GDAS")


def test_evaluation_runs_the_argmax_path_and_follows_masks(small_spaces, count_calls):
    torch.manual_seed(0)
    supernet = small_spaces["nb201"][0]()
    module = dnas.GDAS(supernet).eval()
    with torch.no_grad():
        supernet.alpha("cell").copy_(torch.randn_like(supernet.alpha("cell")))
    w = module.sample_weights()["cell"]
    assert torch.equal(w.argmax(-1), supernet.alpha("cell").argmax(-1)) and torch.equal(w.sum(-1), torch.ones(6))
    best = int(supernet.alpha("cell")[0].argmax())
    with supernet.masked("cell", 0, best):
        w = module.sample_weights()["cell"]
        assert int(w[0].argmax()) != best and float(w[0].sum()) == 1.0
    with supernet.masked("cell", 1):
        assert float(module.sample_weights()["cell"][1].sum()) == 0.0
    calls = count_calls(supernet)
    module(torch.randn(2, 1, 8, 8))
    assert all(len(ks) == 1 for ks in calls.values() if ks)


def test_fbnet_hard_mode_uses_the_same_single_path_mechanism(small_spaces, count_calls):
    torch.manual_seed(0)
    make, shape = small_spaces["fbnet"]
    supernet = make()
    module = dnas.FBNet(supernet, hard=True, single_path=True).train()
    assert module.needs_unused_parameters and not dnas.FBNet(make(), hard=True).needs_unused_parameters
    calls = count_calls(supernet)
    supernet(torch.randn(2, *shape), module.sample_weights())
    assert all(len(ks) == 1 for ks in calls.values())
    with pytest.raises(ValueError, match="single_path needs hard"):
        dnas.FBNet(make(), single_path=True)
