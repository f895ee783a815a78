import functools
import json
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

import dnas
from dnas.callbacks import GenotypeWriter
from dnas.cells.darts import DartsSupernet
from dnas.cells.edges import EdgeOptions
from dnas.cli import DnasCLI
from dnas.data import DigitsDataModule

ROOT = Path(__file__).resolve().parents[2]
SGD = functools.partial(torch.optim.SGD, lr=0.025, momentum=0.9, weight_decay=3e-4)
ADAM = functools.partial(torch.optim.Adam, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)


def _supernet(layers=2, **kw):
    torch.manual_seed(0)
    return DartsSupernet(init_channels=4, num_classes=10, layers=layers, in_channels=1, **kw)


def _trainer(tmp_path, steps=2, callbacks=()):
    return pl.Trainer(
        callbacks=list(callbacks),
        max_steps=steps,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        deterministic=True,
    )


def test_pcdarts_defaults_are_the_papers():
    model = dnas.PCDARTS(_supernet(edge_options=EdgeOptions(partial_channels=2, edge_normalization=True)))
    assert model.hparams.arch_warmup_epochs == 15 and model.hparams.w_lr_min == 0.0
    (w_opt, a_opt), _ = model.configure_optimizers()
    assert isinstance(w_opt, torch.optim.SGD) and isinstance(a_opt, torch.optim.Adam)
    assert w_opt.defaults["lr"] == 0.1 and w_opt.defaults["momentum"] == 0.9 and w_opt.defaults["weight_decay"] == 3e-4
    assert a_opt.defaults["lr"] == 6e-4 and a_opt.defaults["betas"] == (0.5, 0.999)
    assert a_opt.defaults["weight_decay"] == 1e-3
    in_adam = {id(p) for g in a_opt.param_groups for p in g["params"]}
    assert id(model.supernet.arch["normal"].beta) in in_adam and id(model.supernet.arch["reduce"].beta) in in_adam
    assert not in_adam & {id(p) for g in w_opt.param_groups for p in g["params"]}


def test_k1_without_edge_normalisation_computes_what_darts_computes(tmp_path):
    darts = dnas.DARTS(_supernet(), w_optimizer=SGD, a_optimizer=ADAM)
    pc = dnas.PCDARTS(
        _supernet(edge_options=EdgeOptions(partial_channels=1, edge_normalization=False)),
        w_optimizer=SGD,
        a_optimizer=ADAM,
        w_lr_min=0.001,
        arch_warmup_epochs=0,
    )
    assert torch.equal(
        torch.cat([p.flatten() for p in darts.parameters()]), torch.cat([p.flatten() for p in pc.parameters()])
    )
    x, y = torch.randn(6, 1, 8, 8), torch.arange(6)
    for name in ("weight_loss", "arch_loss"):
        grads = []
        for model in (darts, pc):
            loss, logits, _ = getattr(model, name)(x, y)
            grads.append((logits, torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)))
        assert torch.equal(grads[0][0], grads[1][0])
        for a, b in zip(grads[0][1], grads[1][1]):
            assert (a is None and b is None) or torch.equal(a, b)
    # the whole bilevel loop (α step, weight step, clipping, schedule) on the same batches
    for model in (darts, pc):
        pl.seed_everything(0)
        _trainer(tmp_path, steps=2).fit(model, DigitsDataModule(batch_size=8))
    for (name, a), b in zip(darts.state_dict().items(), pc.state_dict().values()):
        assert torch.equal(a, b), name


def test_pcdarts_trains_alpha_and_beta_on_partial_channel_supernet(tmp_path):
    model = dnas.PCDARTS(
        _supernet(3, edge_options=EdgeOptions(partial_channels=2, edge_normalization=True)), arch_warmup_epochs=0
    )
    before = {n: p.detach().clone() for n, p in model.supernet.named_arch_parameters()}
    x, y = torch.randn(6, 1, 8, 8), torch.arange(6)
    loss, _, _ = model.arch_loss(x, y)
    grads = torch.autograd.grad(loss, model.supernet.arch_parameters())
    assert all(g.abs().sum() > 0 for g in grads)  # β gets a gradient through the node sums
    pl.seed_everything(0)
    _trainer(tmp_path, steps=2, callbacks=[GenotypeWriter()]).fit(model, DigitsDataModule(batch_size=8))
    for n, p in model.supernet.named_arch_parameters():
        assert not torch.equal(before[n], p.detach()), n
    genotype = json.loads((tmp_path / "genotype.json").read_text())
    assert [len(s) for s in genotype["meta"]["beta_softmax"]["normal"]] == [2, 3, 4, 5]


def test_pcdarts_warmup_keeps_alpha_and_beta(tmp_path):
    model = dnas.PCDARTS(_supernet(edge_options=EdgeOptions(partial_channels=2, edge_normalization=True)))
    before = [p.detach().clone() for p in model.supernet.arch_parameters()]
    _trainer(tmp_path, steps=2).fit(model, DigitsDataModule(batch_size=8))
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, model.supernet.arch_parameters()))


def test_quickstart_pcdarts_config_fits(tmp_path, run_cli):
    code, _, err = run_cli(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / "quickstart_pcdarts.yaml"),
            "--trainer.fast_dev_run",
            "2",
            "--data.init_args.batch_size",
            "16",
            "--model.init_args.arch_warmup_epochs",
            "0",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ]
    )
    assert code == 0, err
    assert (tmp_path / "genotype.json").is_file() or any(tmp_path.rglob("genotype.json"))


def test_pcdarts_paper_config_parses(run_cli):
    code, out, err = run_cli(["fit", "--config", str(ROOT / "configs" / "pcdarts_cifar10.yaml"), "--print_config"])
    assert code == 0, err
    cfg = yaml.safe_load(out)
    init = cfg["model"]["init_args"]
    assert cfg["model"]["class_path"] == "dnas.PCDARTS" and cfg["data"]["init_args"]["batch_size"] == 256
    assert init["arch_warmup_epochs"] == 15 and init["w_optimizer"]["init_args"]["lr"] == 0.1
    assert init["a_optimizer"]["init_args"]["lr"] == 0.0006
    assert init["supernet"]["init_args"]["edge_options"]["partial_channels"] == 4
    cli = DnasCLI(args=["--config", str(ROOT / "configs" / "pcdarts_cifar10.yaml")], run=False)
    (w_opt, a_opt), _ = cli.model.configure_optimizers()
    assert isinstance(cli.model, dnas.PCDARTS) and cli.model.supernet.edge_options.partial_channels == 4
    assert (type(w_opt), w_opt.defaults["lr"], type(a_opt), a_opt.defaults["lr"]) == (
        torch.optim.SGD,
        0.1,
        torch.optim.Adam,
        6e-4,
    )
