import json

import pytest
import pytorch_lightning as pl
import torch

import dnas
from dnas.callbacks import GenotypeWriter, TemperatureSchedule
from dnas.data import DigitsDataModule
from dnas.genotypes import Genotype
from dnas.latency import LatencyLoss, measure_table


@pytest.fixture
def supernet(small_spaces):
    torch.manual_seed(0)
    return small_spaces["fbnet"][0]()


def test_fbnet_search_warmup_latency_logging_temperature_and_samples(tmp_path, supernet):
    net = supernet
    table = measure_table(net, torch.zeros(1, 1, 8, 8), metric="flops", progress=False)
    module = dnas.FBNet(
        net,
        latency_loss=LatencyLoss(table, form="fbnet"),
        arch_warmup_epochs=1,
        final="sample",
        num_samples=2,
        hard=True,
    )
    assert module.hparams.final == "sample" and "w_optimizer" not in module.hparams
    alpha0 = net.alpha("layers").detach().clone()
    alphas = []

    class Watch(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            alphas.append(pl_module.supernet.alpha("layers").detach().clone())

    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=1,
        limit_val_batches=1,
        accelerator="cpu",
        log_every_n_steps=1,
        callbacks=[TemperatureSchedule(initial=5.0, rate=0.045), Watch(), GenotypeWriter()],
        logger=pl.loggers.CSVLogger(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, DigitsDataModule(batch_size=8, train_portion=0.8))
    assert torch.equal(alphas[0], alpha0)  # θ frozen during the warm-up epoch
    assert not torch.equal(alphas[1], alpha0)
    assert abs(float(module.temperature) - 5.0 * 0.9559974818) < 1e-5
    log_dir = tmp_path / "lightning_logs" / "version_0"
    ckpt = torch.load(next(log_dir.rglob("*.ckpt")), weights_only=True, map_location="cpu")
    assert abs(float(ckpt["state_dict"]["temperature"]) - float(module.temperature)) < 1e-7
    header = (log_dir / "metrics.csv").read_text().splitlines()[0]
    assert "arch/flops_step" in header and "arch/ce_step" in header and "arch/temperature" in header
    samples = sorted(log_dir.glob("genotype_sample_*.json"))
    assert len(samples) == 2
    for path in samples:
        g = Genotype.from_file(path)
        assert g.space == "fbnet" and len(g.cells["layers"].edges) == 22
        assert set(g.cells["layers"].ops()) <= {"k3_e1", "k3_e1_g2", "skip"}
    assert json.loads((log_dir / "genotype.json").read_text())["meta"]["algorithm"] == "FBNet"


def test_sampling_follows_the_learned_distribution(supernet):
    net = supernet
    module = dnas.FBNet(net)
    with torch.no_grad():
        net.alpha("layers").copy_(torch.tensor([[5.0, 0.0, -5.0]]).expand(22, 3))
    ops = [op for g in module.sample_genotypes(20, seed=1) for op in g.cells["layers"].ops()]
    share = ops.count("k3_e1") / len(ops)
    assert 0.97 < share <= 1.0  # softmax([5, 0, -5])[0] = 0.9933
    assert module.sample_genotypes(3, seed=4) == module.sample_genotypes(3, seed=4)


def test_training_uses_gumbel_weights_and_eval_uses_softmax(supernet):
    module = dnas.FBNet(supernet, hard=True)
    module.train()
    w = module.sample_weights()["layers"]
    assert set(w.detach().unique().tolist()) == {0.0, 1.0}
    module.eval()
    torch.testing.assert_close(module.sample_weights()["layers"], torch.softmax(module.supernet.alpha("layers"), -1))


def test_quickstart_config_measures_then_searches(tmp_path):
    from pathlib import Path

    from dnas.cli import main

    config = str(Path(__file__).resolve().parents[2] / "configs" / "quickstart_fbnet.yaml")
    table = str(tmp_path / "lut.json")
    small = ["--model.init_args.supernet.init_args.primitives", "[k3_e1, skip]"]
    main(["lut", "--config", config, *small, "--out", table, "--metric", "flops", "--no_progress"])
    main(
        ["fit", "--config", config, *small, "--model.init_args.latency_loss.init_args.table", table]
        + ["--model.init_args.latency_loss.init_args.scale", "1e-3", "--trainer.max_epochs", "2"]
        + ["--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar"]
        + ["false", "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.default_root_dir", str(tmp_path)]
    )
    run = tmp_path / "quickstart_fbnet" / "version_0"
    assert (run / "genotype.json").exists() and len(list(run.glob("genotype_sample_*.json"))) == 3
