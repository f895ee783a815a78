"""A run whose log directory is an fsspec URL (fsspec's in-memory filesystem stands in for s3://, gs://, ...).

Checkpoints, genotype.json, the plots, report.md/report.html and the end-of-fit export land in the URL's filesystem
(nothing in a local ``memory:`` folder), a run resumes from the URL checkpoint, ``dnas export`` reads a genotype and a
checkpoint from URLs and writes to one, and URL reads keep the checks of local ones (size before reading, no pickled
code). The local atomic writes are tested, unchanged, in tests/test_io_files.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib

import fsspec
import pytest
import pytorch_lightning as pl
import torch

import dnas
from dnas.callbacks import AlphaPlots, GenotypeWriter, SearchExport
from dnas.cells.darts import DartsSupernet
from dnas.cli import main
from dnas.data import DigitsDataModule
from dnas.export import build_model
from dnas.export.artifacts import ExportError, export_model
from dnas.genotypes import GenotypeError, load
from dnas.io import AtomicCheckpointIO, atomic_torch_save, atomic_write_text

RUN = "memory://runs/search/s/version_0"
OPTIONS = dict(init_channels=4, layers=3, num_classes=10, in_channels=1)


def _search_checkpoint() -> bytes:
    """A search checkpoint's layout (supernet weights), as torch.save writes it."""
    buffer = io.BytesIO()
    torch.save({"state_dict": {"supernet.stem.0.weight": torch.zeros(2)}, "hyper_parameters": {}}, buffer)
    return buffer.getvalue()


@pytest.fixture
def memfs(tmp_path, monkeypatch):
    """fsspec's (process-wide) memory filesystem, empty before and after the test; the working directory is empty."""
    monkeypatch.chdir(tmp_path)  # a URL mistaken for a path would appear here as a "memory:" folder
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]
    yield fs
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]


def _fit(epochs: int, ckpt_path: str | None = None, report: bool = True) -> tuple[pl.Trainer, dnas.DARTS]:
    """A tiny search logging to ``memory://runs/search``; ``report``: with the α pictures, report and export."""
    pl.seed_everything(0)
    callbacks = [pl.callbacks.ModelCheckpoint(save_last=True), GenotypeWriter()]
    if report:
        callbacks += [AlphaPlots(keep_epoch_files=False, measure_latency=False, dpi=30), SearchExport()]
    module = dnas.DARTS(DartsSupernet(init_channels=2, num_classes=10, layers=2, in_channels=1))
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=epochs, limit_train_batches=2, limit_val_batches=1,
        default_root_dir="memory://runs/search", logger=pl.loggers.CSVLogger("memory://runs/search", name="s"),
        plugins=[AtomicCheckpointIO()], enable_progress_bar=False, enable_model_summary=False,
        callbacks=callbacks,
    )  # fmt: skip
    trainer.fit(module, DigitsDataModule(batch_size=8), ckpt_path=ckpt_path)
    return trainer, module


def _export(argv: list[str]) -> tuple[object, str]:
    err = io.StringIO()
    code: object = 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            main(["export", *argv])
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def test_search_writes_every_artefact_to_the_url_and_resumes_from_it(memfs, tmp_path):
    _, module = _fit(1)
    files = {p.removeprefix("/runs/search/s/version_0/") for p in memfs.find("/runs")}
    expected = {"checkpoints/last.ckpt", "genotype.json", "genotype_history.jsonl", "report.md", "report.html"}
    expected |= {"plots/alpha_heatmap.png", "plots/genotype.png", "plots/curves.png", "metrics.csv"}
    expected |= {"export/model.py", "export/weights.pt", "export/summary.json", "export/genotype.json"}
    assert expected <= files, sorted(expected - files)
    assert not any(".dnas-tmp-" in f for f in files)
    assert list(tmp_path.iterdir()) == []  # no local "memory:" folder, no lightning_logs
    assert load(f"{RUN}/genotype.json") == module.current_genotype()  # a genotype file read from a URL
    html = memfs.cat_file("/runs/search/s/version_0/report.html").decode()
    assert html.count('src="data:image/png;base64,') >= 3  # the report read its pictures back from the URL
    assert (
        "![final edge weights](plots/alpha_heatmap.png)"
        in memfs.cat_file("/runs/search/s/version_0/report.md").decode()
    )
    assert json.loads(memfs.cat_file("/runs/search/s/version_0/export/summary.json"))["dnas_export"] == 1

    trainer, resumed = _fit(2, ckpt_path=f"{RUN}/checkpoints/last.ckpt", report=False)
    assert trainer.current_epoch == 2  # resumed after epoch 0, ran epoch 1
    lines = memfs.cat_file("/runs/search/s/version_1/genotype_history.jsonl").decode().splitlines()
    assert [json.loads(line)["meta"]["epoch"] for line in lines] == [1]
    assert load("memory://runs/search/s/version_1/genotype.json") == resumed.current_genotype()
    assert list(tmp_path.iterdir()) == []


def test_export_cli_reads_urls_and_writes_to_one(memfs):
    genotype = load("DARTS_V2")
    model = build_model(genotype, **OPTIONS)
    source = "memory://exports/search"
    export_model(model, genotype, OPTIONS, source, input_size=(8, 8), flops=False)
    out = "memory://exports/trained"
    sizes = ["--init_channels", "4", "--layers", "3", "--in_channels", "1", "--input_size", "8", "8", "--no_flops"]
    code, err = _export(
        ["--genotype", f"{source}/genotype.json", "--ckpt", f"{source}/weights.pt", "--out", out, *sizes]
    )
    assert (code, err) == (0, "")
    assert sorted(memfs.ls("/exports/trained", detail=False)) == [
        f"/exports/trained/{n}" for n in ("genotype.json", "model.py", "summary.json", "weights.pt")
    ]
    weights = torch.load(io.BytesIO(memfs.cat_file("/exports/trained/weights.pt")), weights_only=True)
    source_weights = model.state_dict()
    assert weights.keys() == source_weights.keys() and all(torch.equal(weights[k], source_weights[k]) for k in weights)
    summary = json.loads(memfs.cat_file("/exports/trained/summary.json"))
    assert summary["weights"] == f"from {source}/weights.pt"

    # a search checkpoint is refused with the way out, named as a URL
    memfs.pipe_file("/runs/search/s/version_0/checkpoints/last.ckpt", _search_checkpoint())
    code, err = _export(["--ckpt", f"{RUN}/checkpoints/last.ckpt", "--out", "memory://exports/x"])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is a search checkpoint" in err and f"--genotype {RUN}/genotype.json" in err
    assert not memfs.exists("/exports/x")


def test_export_to_a_url_replaces_only_a_previous_export_and_writes_its_summary_last(memfs, monkeypatch):
    genotype = load("DARTS_V2")
    options = OPTIONS
    model = build_model(genotype, **options)
    url = "memory://exports/e"
    kwargs = dict(input_size=(8, 8), flops=False)
    assert export_model(model, genotype, options, url, **kwargs) == url
    with pytest.raises(ExportError, match="already exists; choose another --out or pass --overwrite"):
        export_model(model, genotype, options, url, **kwargs)

    events = []
    from dnas.storage import put_url as real_put

    real_rm = memfs.rm_file
    monkeypatch.setattr("dnas.export.remote.put_url", lambda u, d: events.append(("put", u)) or real_put(u, d))
    monkeypatch.setattr(memfs, "rm_file", lambda p: events.append(("rm", p)) or real_rm(p))
    memfs.pipe_file("/exports/e/model.onnx", b"an artifact of an earlier export in another format")
    export_model(model, genotype, options, url, overwrite=True, **kwargs)
    assert events[0] == ("rm", "/exports/e/summary.json")  # readers see no finished export while files change
    assert events[-1] == ("put", f"{url}/summary.json")  # ... until every other file is there
    assert ("rm", "/exports/e/model.onnx") in events and not memfs.exists("/exports/e/model.onnx")

    memfs.pipe_file("/exports/e/notes.txt", b"a user's file")
    with pytest.raises(ExportError, match=r"holds files dnas export did not write: \['notes.txt'\]"):
        export_model(model, genotype, options, url, overwrite=True, **kwargs)
    memfs.pipe_file("/exports/file", b"x")
    with pytest.raises(ExportError, match="exists and is not a directory"):
        export_model(model, genotype, options, "memory://exports/file", overwrite=True, **kwargs)


class Touch:
    """Unpickling this runs ``Path(marker).touch()``: the stand-in for arbitrary code."""

    def __init__(self, marker: pathlib.Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path(self.marker).touch, ())


def test_url_reads_keep_the_checks_of_local_files(memfs, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"state_dict": {}, "payload": Touch(marker)}, buffer)
    memfs.pipe_file("/in/evil.pt", buffer.getvalue())
    code, err = _export(["--genotype", "DARTS_V2", "--ckpt", "memory://in/evil.pt", "--out", "memory://out/e"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "contains pickled code" in err
    assert not marker.exists() and not memfs.exists("/out/e")

    memfs.pipe_file("/in/big.json", b" " * (5 * 1024 * 1024))
    memfs.pipe_file("/in/dir.json/x", b"{}")
    opened = []
    real_open = memfs.open
    monkeypatch.setattr(memfs, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    for url, message in [
        ("memory://in/big.json", "is larger than the 4194304-byte limit"),
        ("memory://in/dir.json", "is a directory, not a regular file"),
        ("memory://in/missing.json", "does not exist"),
        ("nosuchprotocol://in/x.json", "cannot read genotype file"),
    ]:
        with pytest.raises(GenotypeError, match=message):
            load(url)
    assert opened == []  # refused from fs.info's type and size, before a byte was read


def test_url_writes_replace_a_file_whole(memfs, monkeypatch):
    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot be saved")

    atomic_torch_save({"w": torch.ones(2)}, "memory://ckpt/last.ckpt")
    before = memfs.cat_file("/ckpt/last.ckpt")
    with pytest.raises(RuntimeError, match="cannot be saved"):  # fails while the file is built: nothing stored
        atomic_torch_save({"w": torch.zeros(2), "x": Unsaveable()}, "memory://ckpt/last.ckpt")
    assert memfs.cat_file("/ckpt/last.ckpt") == before

    # a filesystem that is no object store: a temporary file beside the target, renamed over it by fs.mv
    monkeypatch.setattr("dnas.storage.whole_object_puts", lambda fs: False)
    moves = []
    real_mv = memfs.mv
    monkeypatch.setattr(memfs, "mv", lambda a, b, **k: moves.append((a, b)) or real_mv(a, b, **k))
    atomic_write_text("memory://run/genotype.json", "new")
    [(tmp, target)] = moves
    assert target == "/run/genotype.json" and tmp.startswith("/run/.genotype.json.dnas-tmp-") and tmp.endswith(".tmp")
    assert memfs.cat_file("/run/genotype.json") == b"new" and not memfs.exists(tmp)

    def failing_mv(a, b, **k):
        raise OSError("connection lost")

    monkeypatch.setattr(memfs, "mv", failing_mv)
    with pytest.raises(OSError, match="connection lost"):
        atomic_write_text("memory://run/genotype.json", "newer")
    assert memfs.cat_file("/run/genotype.json") == b"new" and memfs.ls("/run", detail=False) == ["/run/genotype.json"]


def test_file_urls_are_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "run" / "genotype.json"
    assert atomic_write_text(f"file://{target}", "{}") == target and target.read_text() == "{}"
    assert not (tmp_path / "file:").exists()


def test_a_url_without_its_filesystem_is_one_line_before_the_run(tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    config = str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
    code, out, err = run_cli(["fit", "--config", config, "--trainer.default_root_dir", "nosuchprotocol://b/runs"])
    lines = [line for line in err.splitlines() if line.startswith("dnas: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert "trainer.default_root_dir 'nosuchprotocol://b/runs'" in lines[0] and "nosuchprotocol" in lines[0]
    assert list(tmp_path.iterdir()) == []
