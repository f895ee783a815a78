"""A search's files are written by callbacks: GenotypeWriter (genotypes) and SearchExport (the export)."""

import json
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

import dnas
import dnas.callbacks.genotype_writer as writer_module
import dnas.callbacks.search_export as export_module
from dnas.callbacks import AlphaPlots, GenotypeWriter, SearchExport
from dnas.cells.darts import DartsSupernet
from dnas.cells.fbnet import FBNetSupernet
from dnas.data import DigitsDataModule
from dnas.genotypes import Genotype


def _darts():
    torch.manual_seed(0)
    return dnas.DARTS(DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1))


def _fit(tmp_path, module, callbacks, epochs=2):
    pl.seed_everything(0)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=1,
        limit_val_batches=0,
        logger=pl.loggers.CSVLogger(tmp_path, name="s"),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(module, DigitsDataModule(batch_size=16))
    return trainer, tmp_path / "s" / "version_0"


def _stub_trainer(tmp_path, rank_zero=True):
    """What the callbacks read of a trainer: the rank and what dnas.io.log_dir resolves the log directory from."""
    return SimpleNamespace(is_global_zero=rank_zero, loggers=[], default_root_dir=str(tmp_path), current_epoch=0)


def test_writer_writes_genotype_atomically_and_one_history_line_per_epoch(tmp_path, monkeypatch):
    atomic, printed = [], []
    real = writer_module.atomic_write_text
    monkeypatch.setattr(writer_module, "atomic_write_text", lambda p, text: atomic.append(p.name) or real(p, text))
    monkeypatch.setattr(writer_module, "rank_zero_info", printed.append)
    module = _darts()
    _, run = _fit(tmp_path, module, [GenotypeWriter()])
    assert atomic == ["genotype.json", "genotype.json"]  # each epoch, through the atomic writer
    final = Genotype.from_file(run / "genotype.json")
    assert final == module.current_genotype() and final.meta["epoch"] == 1 and final.meta["algorithm"] == "DARTS"
    lines = (run / "genotype_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["meta"]["epoch"] for line in lines] == [0, 1]
    assert Genotype.from_dict(json.loads(lines[-1])) == final
    assert printed == [f"epoch {e}: {g}" for e, g in ((0, Genotype.from_dict(json.loads(lines[0]))), (1, final))]
    assert not list(run.glob("genotype_sample_*.json"))  # DARTS has no samples


def test_writer_without_history_and_search_module_without_callbacks(tmp_path):
    _, run = _fit(tmp_path / "a", _darts(), [GenotypeWriter(history=False)], epochs=1)
    assert (run / "genotype.json").is_file() and not (run / "genotype_history.jsonl").exists()
    _, run = _fit(tmp_path / "b", _darts(), [], epochs=1)  # the module alone writes no files
    assert sorted(p.name for p in run.iterdir()) == ["hparams.yaml", "metrics.csv"]


def test_writer_and_export_write_nothing_off_rank_zero(tmp_path):
    class NoGenotype(dnas.DARTS):
        def current_genotype(self):
            raise AssertionError("derived off rank zero")

    module = NoGenotype(DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1))
    other = _stub_trainer(tmp_path, rank_zero=False)
    GenotypeWriter().on_train_epoch_end(other, module)
    GenotypeWriter().on_fit_end(other, module)
    SearchExport().on_fit_end(other, module)
    assert list(tmp_path.iterdir()) == []


def _fbnet(final):
    torch.manual_seed(0)
    net = FBNetSupernet(num_classes=10, in_channels=1, input_size=8, width_mult=0.25, head_channels=8)
    return dnas.FBNet(net, final=final, num_samples=3, sample_seed=5)


def test_writer_saves_fbnet_samples_at_the_end_of_fit(tmp_path):
    module = _fbnet("sample")
    GenotypeWriter().on_fit_end(_stub_trainer(tmp_path), module)
    files = sorted(tmp_path.glob("genotype_sample_*.json"))
    assert [p.name for p in files] == [f"genotype_sample_{i}.json" for i in range(3)]
    assert [Genotype.from_file(p) for p in files] == module.sample_genotypes()
    GenotypeWriter().on_fit_end(_stub_trainer(tmp_path / "argmax"), _fbnet("argmax"))
    GenotypeWriter().on_fit_end(_stub_trainer(tmp_path / "darts"), _darts())
    assert not (tmp_path / "argmax").exists() and not (tmp_path / "darts").exists()


def test_callbacks_need_a_search_module_and_export_a_plain_folder_name():
    class Plain(pl.LightningModule):
        pass

    for callback in (GenotypeWriter(), SearchExport()):
        with pytest.raises(TypeError, match=rf"{type(callback).__name__} needs a search module .*Plain has none"):
            callback.on_fit_start(None, Plain())
    for bad in ("", ".", "..", "a/b", "a\\b"):
        with pytest.raises(ValueError, match="dirname must be one folder name"):
            SearchExport(dirname=bad)


def test_export_options_reach_the_export_and_the_report(tmp_path, monkeypatch):
    printed = []
    monkeypatch.setattr(export_module, "rank_zero_info", printed.append)
    plots = AlphaPlots(dpi=30, tensorboard=False, measure_latency=False)
    _, run = _fit(tmp_path, _darts(), [plots, SearchExport(options={"init_channels": 6}, dirname="found")], epochs=1)
    summary = json.loads((run / "found" / "summary.json").read_text())
    assert summary["options"]["init_channels"] == 6 and summary["options"]["layers"] == 3
    assert printed and printed[0].startswith(f"dnas: wrote {run / 'found'}/model.py")
    assert '{"init_channels": 6}' in (run / "report.md").read_text()  # the report describes the exported network
    assert not (run / "genotype.json").exists()  # the report does not need the genotype writer
