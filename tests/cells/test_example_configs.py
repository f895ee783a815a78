"""The MNIST-1D and tabular quickstarts run end to end through the CLI, and their found genotypes export."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from dnas.export import build_model
from dnas.genotypes import Genotype

ROOT = Path(__file__).resolve().parents[2]


EXAMPLES = [
    # config, run name, extra overrides (tiny data), input shape of one sample
    ("quickstart_mnist1d.yaml", "quickstart_mnist1d", ["--data.init_args.num_samples", "300"], (1, 40)),
    ("quickstart_tabular.yaml", "quickstart_tabular", [], (30,)),
]


@pytest.mark.parametrize("config", [e[0] for e in EXAMPLES] + ["nb201_darts_cifar10.yaml"])
def test_config_prints_and_round_trips(tmp_path, config, run_cli):
    code, text, err = run_cli(["fit", "--config", str(ROOT / "configs" / config), "--print_config"])
    assert code == 0, err
    saved = tmp_path / "c.yaml"
    saved.write_text(text)
    code, again, err = run_cli(["fit", "--config", str(saved), "--print_config"])
    assert code == 0, err
    assert yaml.safe_load(again) == yaml.safe_load(text)


@pytest.mark.parametrize("config,name,extra,shape", EXAMPLES)
def test_darts_search_then_export(tmp_path, config, name, extra, shape, run_cli):
    code, _, err = run_cli(
        ["fit", "--config", str(ROOT / "configs" / config)]
        + extra
        + [
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    assert code == 0, err
    run = tmp_path / name / "version_0"
    genotype = Genotype.from_file(run / "genotype.json")
    assert genotype.meta["algorithm"] == "DARTS"
    assert all(e.op != "none" for e in genotype.cells["cell"].edges)
    net = build_model(genotype).eval()
    assert net.is_discrete
    assert net(torch.randn(3, *shape)).shape[0] == 3
    metrics = (run / "metrics.csv").read_text()
    assert "arch/loss" in metrics and "val/acc" in metrics
    assert json.loads((run / "genotype.json").read_text())["meta"]["build"]["options"]


def test_cost_table_tool_and_latency_aware_search_on_the_tabular_example(tmp_path, run_cli):
    config = str(ROOT / "configs" / "quickstart_tabular.yaml")
    table = tmp_path / "lut.json"
    code, out, err = run_cli(["lut", "--config", config, "--metric", "params", "--out", str(table), "--no_progress"])
    assert code == 0, err
    entries = json.loads(table.read_text())
    assert entries  # one entry per (mixed op, candidate)
    override = tmp_path / "latency.yaml"
    override.write_text(
        "model:\n  init_args:\n    latency_loss:\n      class_path: dnas.latency.LatencyLoss\n"
        f"      init_args:\n        table: {table}\n        form: add\n        target: 10000.0\n"
    )
    code, _, err = run_cli(
        ["fit", "--config", config, "--config", str(override)]
        + ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
        + ["--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path)]
        + ["--trainer.enable_progress_bar", "false"]
    )
    assert code == 0, err
    run = tmp_path / "quickstart_tabular" / "version_0"
    assert "arch/params" in (run / "metrics.csv").read_text()  # the expected cost is logged by the arch step
    assert build_model(Genotype.from_file(run / "genotype.json")) is not None
