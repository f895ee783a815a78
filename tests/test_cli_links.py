"""The data's ``num_classes``/``in_channels`` reach the model through argument links (dnas.cli_links.LINKS).

Every shipped config states them once (in the data); a value also written for the model must agree with the data.
"""

from pathlib import Path

import pytest
import torch
import yaml

from dnas.cli import DnasCLI

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml") if p.name != "darts_cifar10_ddp.yaml")  # overlay
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.callbacks", "[]"]
QUIET += ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto"]
SHRINK = {  # the paper-sized networks, made small (the links do not depend on the size)
    "dnas.cells.darts.DartsSupernet": {"init_channels": 4, "layers": 3},
    "dnas.cells.nb201.NB201Supernet": {"init_channels": 4, "cells_per_stage": 1},
    "dnas.cells.fbnet.FBNetSupernet": {"width_mult": 0.25, "head_channels": 16},
}


def _cli(tmp_path, *args: str) -> DnasCLI:
    return DnasCLI(args=[*args, *QUIET, "--trainer.default_root_dir", str(tmp_path)], run=False)


def _network(cli: DnasCLI) -> torch.nn.Module:
    """The network that maps the data to logits: a search module's supernet, a Retrain's model."""
    return getattr(cli.model, "supernet", None) or cli.model.model


def _image_folder(tmp_path, classes: int) -> Path:
    root = tmp_path / "images"
    for i in range(classes):
        (root / "train" / f"class_{i}").mkdir(parents=True)
    return root


def _conv1d_genotype(tmp_path) -> Path:
    """A 1-D genotype whose recorded build has 5 classes and 3 channels (the data has 10 and 1)."""
    from dnas.cells.conv1d import Conv1dSupernet

    path = tmp_path / "genotype.json"
    path.write_text(Conv1dSupernet(channels=4, stages=2, num_classes=5, in_channels=3).genotype().to_json())
    return path


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_builds_the_datas_input_and_head(name, tmp_path):
    """No shipped config states the classes or channels; the network is built for the data's."""
    path = ROOT / "configs" / name
    args = ["--config", str(path)]
    model = yaml.safe_load(path.read_text())["model"]
    supernet = model["init_args"].get("supernet", {}).get("class_path")
    for key, value in SHRINK.get(supernet, {}).items():
        args += [f"--model.init_args.supernet.init_args.{key}", str(value)]
    if model["class_path"] == "dnas.Retrain" and "layers" in model["init_args"].get("options", {}):
        args += ["--model.init_args.options", str({**model["init_args"]["options"], "init_channels": 8, "layers": 3})]
    if "imagenet" in name:  # three class folders: a head of 3, not the 100 / 1000 the config's data would have
        args += ["--data.init_args.root", str(_image_folder(tmp_path, 3)), "--data.init_args.image_size", "64"]
    if name == "retrain_mnist1d.yaml":
        args += ["--model.init_args.genotype", str(_conv1d_genotype(tmp_path))]
    if name == "quickstart_tabular.yaml":  # wine: 13 features and 3 classes (the supernet's defaults: 30 and 2)
        args += ["--data.init_args.dataset", "wine"]
    cli = _cli(tmp_path, *args)
    dm = cli.datamodule
    if "imagenet" in name:
        assert dm.num_classes == 3
    with torch.no_grad():
        out = _network(cli).eval()(torch.zeros(1, *dm.input_size))
    assert out.shape == (1, dm.num_classes)
    assert cli.model.hparams.num_classes == dm.num_classes


def test_a_config_without_channels_builds_the_datas_stem(tmp_path):
    """The DARTS supernet's default is 3 channels; digits have 1, and only the data says so."""
    cli = _cli(tmp_path, "--config", str(ROOT / "configs" / "quickstart.yaml"))
    first_conv = next(m for m in cli.model.supernet.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 1
    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    assert "in_channels" not in config["model"]["init_args"]["supernet"]["init_args"]


@pytest.mark.parametrize(
    ("config", "flag", "value", "data_value"),
    [
        ("quickstart.yaml", "--model.init_args.supernet.init_args.num_classes", "7", "num_classes=10"),
        ("quickstart.yaml", "--model.init_args.supernet.init_args.in_channels", "3", "in_channels=1"),
        ("quickstart_tabular.yaml", "--model.init_args.supernet.init_args.in_features", "13", "in_channels=30"),
        ("quickstart_retrain.yaml", "--model.init_args.num_classes", "100", "num_classes=10"),
    ],
)
def test_a_value_the_data_contradicts_is_one_line(config, flag, value, data_value, tmp_path, run_cli):
    args = ["fit", "--config", str(ROOT / "configs" / config), flag, value, *QUIET]
    code, _, err = run_cli([*args, "--trainer.default_root_dir", str(tmp_path)])
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("dnas: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"{flag[2:]}={value}" in lines[0] and data_value in lines[0]
    assert f"{flag} {data_value.split('=')[1]}" in lines[0]  # the fix
    assert not list(tmp_path.iterdir())  # refused before the run made anything


def test_a_value_equal_to_the_datas_is_accepted(tmp_path):
    cli = _cli(
        tmp_path,
        *("--config", str(ROOT / "configs" / "quickstart_tabular.yaml"), "--data.init_args.dataset", "iris"),
        *("--model.init_args.supernet.init_args.num_classes", "3"),
    )
    assert cli.model.supernet.num_classes == 3 and cli.model.supernet.in_features == 4


def test_a_datamodule_without_the_attributes_leaves_the_config_value(tmp_path):
    """jsonargparse skips a link whose source object lacks the attribute: the model keeps what the config says."""
    cli = _cli(
        tmp_path,
        *("--config", str(ROOT / "configs" / "quickstart.yaml"), "--data", "pytorch_lightning.LightningDataModule"),
        *("--model.init_args.supernet.init_args.num_classes", "7"),
    )
    assert _network(cli).classifier.out_features == 7
    assert cli.model.hparams.num_classes is None


def test_printed_config_leaves_the_linked_values_to_the_data(run_cli):
    code, text, err = run_cli(["fit", "--config", str(ROOT / "configs" / "quickstart_retrain.yaml"), "--print_config"])
    assert code == 0, err
    model = yaml.safe_load(text)["model"]["init_args"]
    assert "num_classes" not in model and "in_channels" not in model


def test_search_module_refuses_a_supernet_with_other_classes():
    """A supernet whose head is fixed (no num_classes argument to link) must match the data's count."""
    import dnas
    from dnas.cells.tabular import TabularSupernet
    from dnas.errors import ConfigError

    with pytest.raises(ConfigError, match="outputs 2 classes but num_classes is 3"):
        dnas.DARTS(TabularSupernet(in_features=4, num_classes=2), num_classes=3)
    assert dnas.DARTS(TabularSupernet(in_features=4, num_classes=3), num_classes=3).train_acc.num_classes == 3
