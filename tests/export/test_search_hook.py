"""The export a search writes at the end of fit (the ``dnas.callbacks.SearchExport`` callback)."""

import importlib.util
import json

import pytorch_lightning as pl
import torch

from dnas import DARTS, Genotype
from dnas.callbacks import SearchExport
from dnas.cells.darts import DartsSupernet
from dnas.data import DigitsDataModule
from dnas.export.search_hook import export_search_result


def fit(tmp_path, callbacks=None):
    pl.seed_everything(0)
    module = DARTS(DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1))
    trainer = pl.Trainer(
        callbacks=[SearchExport()] if callbacks is None else callbacks,
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=pl.loggers.CSVLogger(tmp_path, name="s"),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(module, DigitsDataModule(batch_size=16))
    return module, tmp_path / "s" / "version_0"


def test_search_leaves_a_ready_model(tmp_path):
    module, log = fit(tmp_path)
    export = log / "export"
    assert sorted(p.name for p in export.iterdir()) == ["genotype.json", "model.py", "summary.json", "weights.pt"]
    assert Genotype.from_file(export / "genotype.json") == module.supernet.genotype()
    summary = json.loads((export / "summary.json").read_text())
    assert summary["options"] == {  # the supernet's recorded sizes, the builder's defaults for the rest
        "init_channels": 4,
        "layers": 3,
        "num_classes": 10,
        "in_channels": 1,
        "stem": "cifar",
        "auxiliary": False,
        "drop_path_prob": 0.0,
    }
    assert summary["input_shape"] == [1, 1, 8, 8] and "untrained" in summary["weights"]
    spec = importlib.util.spec_from_file_location("search_export_model", export / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.load_model()(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_export_can_be_switched_off_and_resized(tmp_path):
    _, log = fit(tmp_path / "off", callbacks=[])  # no SearchExport: the search module writes nothing itself
    assert not (log / "export").exists() and not (log / "genotype.json").exists()
    _, log = fit(tmp_path / "on", callbacks=[SearchExport(options={"init_channels": 6}, dirname="net")])
    assert json.loads((log / "net" / "summary.json").read_text())["options"]["init_channels"] == 6
    assert not (log / "export").exists()
    net = DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1)
    g = net.genotype()
    out, message = export_search_result(g, tmp_path / "e", (1, 8, 8), {"init_channels": 6, "layers": 4})
    options = json.loads((out / "summary.json").read_text())["options"]
    assert options["init_channels"] == 6 and options["layers"] == 4 and "untrained" in message


def test_recorded_build_options_and_genotypes_that_cannot_be_exported(tmp_path):
    net = DartsSupernet(init_channels=6, num_classes=7, layers=4, in_channels=2)
    recorded = net.genotype().meta["build"]["options"]  # recorded by the supernet, not read back from shapes
    assert recorded == {"init_channels": 6, "layers": 4, "num_classes": 7, "in_channels": 2}
    g = Genotype.chain(["skip_connect"], space="some_user_space")
    out, message = export_search_result(g, tmp_path / "x", (3, 8, 8))
    assert out is None and "no exporter for search space 'some_user_space'" in message
    assert not (tmp_path / "x").exists()
    out, message = export_search_result(net.genotype(), tmp_path / "y")  # no input shape recorded or given
    assert out is None and "input shape is unknown" in message and not (tmp_path / "y").exists()


def test_export_skips_a_directory_it_did_not_write(tmp_path):
    net = DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1)
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "mine.txt").write_text("keep")
    out, message = export_search_result(net.genotype(), tmp_path / "e", (1, 8, 8))
    assert out is None and "skipping the end-of-search export" in message and "is not a dnas export" in message
    assert [p.name for p in (tmp_path / "e").iterdir()] == ["mine.txt"]
    out, _ = export_search_result(net.genotype(), tmp_path / "f", (1, 8, 8))
    again, message = export_search_result(net.genotype(), out, (1, 8, 8))  # its own previous export: replaced
    assert again == out and "wrote" in message
