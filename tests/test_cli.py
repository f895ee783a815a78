import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")


def test_print_config_round_trips(tmp_path, run_cli):
    code, first, _ = run_cli(["fit", "--config", QUICKSTART, "--print_config"])
    assert code == 0
    cfg = yaml.safe_load(first)
    assert cfg["model"]["class_path"] == "dnas.DARTS"
    assert cfg["model"]["init_args"]["supernet"]["class_path"] == "dnas.cells.darts.DartsSupernet"
    assert cfg["data"]["class_path"] == "dnas.data.DigitsDataModule"
    saved = tmp_path / "printed.yaml"
    saved.write_text(first)
    code, second, _ = run_cli(["fit", "--config", str(saved), "--print_config"])
    assert code == 0
    assert yaml.safe_load(second) == cfg


def test_several_configs_later_overrides_earlier(tmp_path, run_cli):
    override = tmp_path / "o.yaml"
    override.write_text("model:\n  init_args:\n    unrolled: true\n")
    code, text, _ = run_cli(["fit", "--config", QUICKSTART, "--config", str(override), "--print_config"])
    assert code == 0
    assert yaml.safe_load(text)["model"]["init_args"]["unrolled"] is True


def test_bad_config_value_gives_readable_error(run_cli):
    code, _, err = run_cli(["fit", "--config", QUICKSTART, "--model.init_args.supernet.init_args.layers", "three"])
    assert code != 0
    assert "layers" in err and "three" in err


def test_unknown_class_path_gives_readable_error(tmp_path, run_cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: dnas.NoSuchSearch\n")
    code, _, err = run_cli(["fit", "--config", QUICKSTART, "--config", str(bad)])
    assert code != 0
    assert "NoSuchSearch" in err


def test_fit_quickstart_leaves_checkpoint_genotype_and_metrics(tmp_path, run_cli):
    code, _, err = run_cli(
        [
            "fit",
            "--config",
            QUICKSTART,
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
    run = tmp_path / "quickstart" / "version_0"
    genotype = json.loads((run / "genotype.json").read_text())
    assert genotype["space"] == "darts" and set(genotype["cells"]) == {"normal", "reduce"}
    assert len((run / "genotype_history.jsonl").read_text().splitlines()) == 1
    assert any(run.glob("checkpoints/*.ckpt"))
    metrics = (run / "metrics.csv").read_text()
    for name in ("train/loss", "arch/loss", "val/acc", "alpha/entropy_normal"):
        assert name in metrics


def test_python_dash_m_help():
    result = subprocess.run([sys.executable, "-m", "dnas", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "fit" in result.stdout and "validate" in result.stdout and "predict" in result.stdout


@pytest.mark.parametrize("name", ["darts_cifar10.yaml", "darts_cifar10_2nd.yaml"])
def test_paper_configs_parse(name, run_cli):
    code, text, err = run_cli(["fit", "--config", str(ROOT / "configs" / name), "--print_config"])
    assert code == 0, err
    cfg = yaml.safe_load(text)
    assert cfg["data"]["init_args"]["batch_size"] == 64
    assert cfg["model"]["init_args"]["unrolled"] is name.endswith("2nd.yaml")
