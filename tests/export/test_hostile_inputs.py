"""``dnas export`` on hostile or broken input: names never become code, only its own output is overwritten, and each
bad checkpoint or output path gets one line.

Generated ``model.py`` files are imported in a subprocess whose working directory is the test's temporary directory,
so a payload that did run would only leave a marker file there.
"""

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dnas.cli import main
from dnas.export import build_model
from dnas.export.artifacts import ExportError
from dnas.export.python import render
from dnas.genotypes import CellGenotype, Edge, Genotype, load

SMALL = ["--init-channels", "4", "--layers", "3", "--in-channels", "1", "--input-size", "8", "8", "--no-flops"]
OPTIONS = dict(init_channels=4, layers=3, num_classes=10, in_channels=1, stem="cifar", auxiliary=False)


def payload(marker: str) -> str:
    """Text that runs ``touch <marker>`` if it is ever pasted into source unescaped (docstring or string literal)."""
    return f'x"""\nimport os; os.system("touch {marker}")\n"""'


def export(argv: list[str], capsys) -> tuple[object, str]:
    with pytest.raises(SystemExit) as exc:
        main(["export", *argv])
    return exc.value.code, capsys.readouterr().err


def assert_one_line(code: object, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.count("error:") == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


IMPORT_MODELS = textwrap.dedent(
    """
    import importlib.util, json, sys
    found = {}
    for i, path in enumerate(sys.argv[1:]):
        spec = importlib.util.spec_from_file_location(f"exported_{i}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        found[path] = {"name": mod.GENOTYPE_NAME, "cells": sorted(mod.GENOTYPE["cells"]), "doc": mod.__doc__,
                       "options": mod.OPTIONS}
        mod.build_model()
    print(json.dumps(found))
    """
)


def import_models(tmp_path: Path, *model_files: Path) -> dict:
    """Import each ``model.py`` in a fresh process (cwd ``tmp_path``); its GENOTYPE_NAME, cell names and docstring."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_MODELS, *map(str, model_files)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert not list(tmp_path.rglob("MARKER*")), "importing model.py ran exported text as code"
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def retrain_checkpoint(genotype_name: str, genotype: Genotype) -> dict:
    """The layout of a dnas.Retrain checkpoint, as plain dicts and tensors (loads with weights_only=True)."""
    model = build_model(genotype, init_channels=4, layers=3, in_channels=1)
    return {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": {"genotype": genotype_name, "init_channels": 4, "layers": 3, "in_channels": 1},
        "dnas_genotype": genotype.to_dict(),
    }


# ---------------------------------------------------------------------------------------------- 1. names stay data
def test_genotype_names_from_checkpoint_and_file_name_never_run(tmp_path, capsys):
    g = load("PDARTS")
    from_ckpt = payload("MARKER_CKPT")
    torch.save(retrain_checkpoint(from_ckpt, g), tmp_path / "crafted.ckpt")
    torch.load(tmp_path / "crafted.ckpt", weights_only=True)  # plain data: passes the safe loader
    main(["export", "--ckpt", str(tmp_path / "crafted.ckpt"), "--out", str(tmp_path / "a"), "--no-flops"])
    stem = payload("MARKER_FILE") + "x"
    genotype_file = tmp_path / (stem + ".json")
    genotype_file.write_text(json.dumps(g.to_dict()))
    main(["export", "--genotype", str(genotype_file), "--out", str(tmp_path / "b"), *SMALL])
    printed = capsys.readouterr().out

    found = import_models(tmp_path, tmp_path / "a" / "model.py", tmp_path / "b" / "model.py")
    assert not list(tmp_path.rglob("MARKER*"))
    assert found[str(tmp_path / "a" / "model.py")]["name"] == from_ckpt
    assert found[str(tmp_path / "b" / "model.py")]["name"] == stem
    for info in found.values():
        assert info["cells"] == ["normal", "reduce"]
        assert repr(info["name"]) in info["doc"]  # shown in the docstring, escaped
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["genotype"] == from_ckpt
    assert len(printed.strip().splitlines()) == 2  # one line per export: printed names are escaped too


def test_cell_names_stay_data_and_non_plain_data_is_refused(tmp_path, capsys):
    g = load("DARTS_V2")
    evil_cell = payload("MARKER_CELL")
    # through the CLI, the genotype reader refuses a cell name that is not a plain name
    data = g.to_dict()
    data["cells"][evil_cell] = data["cells"]["normal"]
    (tmp_path / "cells.json").write_text(json.dumps(data))
    code, err = export(["--genotype", str(tmp_path / "cells.json"), "--out", str(tmp_path / "c"), *SMALL], capsys)
    assert_one_line(code, err, "cell name", "is not a valid name")
    assert not (tmp_path / "c").exists()
    # the generator alone keeps such names as data (a Genotype built in Python skips the space's rules)
    built = Genotype("darts", {**g.cells, evil_cell: g.cells["normal"]})
    options = {**OPTIONS, "stem": payload("MARKER_STEM")}
    src = render(build_model(g, **OPTIONS), built, options, (1, 8, 8), payload("MARKER_NAME"), "0")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.py").write_text(src)
    found = import_models(tmp_path, tmp_path / "m" / "model.py")
    assert not list(tmp_path.rglob("MARKER*"))
    assert found[str(tmp_path / "m" / "model.py")]["cells"] == sorted(["normal", "reduce", evil_cell])
    assert found[str(tmp_path / "m" / "model.py")]["options"]["stem"] == payload("MARKER_STEM")

    class Sneaky(int):  # an int whose repr is code
        def __repr__(self) -> str:
            return "__import__('os').system('touch MARKER_REPR')"

    sneaky = Genotype("darts", {**g.cells, "normal": CellGenotype((Edge("sep_conv_3x3", Sneaky(0), 2),), (2,))})
    with pytest.raises(ExportError, match="GENOTYPE holds a value that is not plain data"):
        render(build_model(g, **OPTIONS), sneaky, OPTIONS, (1, 8, 8), "x", "0")
    with pytest.raises(ExportError, match="OPTIONS holds a value that is not plain data"):
        render(build_model(g, **OPTIONS), g, {**OPTIONS, "in_channels": Sneaky(1)}, (1, 8, 8), "x", "0")
    assert not list(tmp_path.rglob("MARKER*"))


def test_generated_source_is_checked_before_it_is_written(tmp_path, monkeypatch):
    import dnas.export.python as python
    from dnas.export.artifacts import export_model

    g = load("DARTS_V2")
    model = build_model(g, **OPTIONS)
    literal = python._literal
    # a data constant rendered as an expression, followed by a statement, or holding another value is refused
    for text, problem in [
        ("__import__('os').getpid()", "assigns GENOTYPE_NAME something that is not a literal"),
        ("'x'\nimport os", "has 24 statements where 23 are expected"),
        ("'another name'", "assigns GENOTYPE_NAME a value other than the one exported"),
    ]:
        monkeypatch.setattr(python, "_literal", lambda v, t=text: t if v == "x" else literal(v))
        with pytest.raises(ExportError, match=re.escape(f"refusing to write model.py: the generated source {problem}")):
            render(model, g, OPTIONS, (1, 8, 8), "x", "0")
    monkeypatch.undo()
    # without its escaping, a name would end the docstring early: caught, and export writes nothing
    monkeypatch.setattr(python, "_escape_doc", lambda text: text)
    with pytest.raises(ExportError, match="refusing to write model.py"):
        render(model, g, OPTIONS, (1, 8, 8), 'a"""b', "0")
    with pytest.raises(ExportError, match="refusing to write model.py"):
        export_model(model, g, OPTIONS, tmp_path / "out", input_shape=(1, 8, 8), name=payload("MARKER"), flops=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- 2. --overwrite
def test_overwrite_replaces_only_a_previous_export(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (run / "notes.txt").write_text("mine")
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    for extra in ([], ["--overwrite"]):
        code, err = export(["--genotype", "DARTS_V2", "--out", str(run), *SMALL, *extra], capsys)
        assert_one_line(code, err, repr(str(run)), "is not a dnas export", "choose a new or empty --out")
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before
    assert (run / "notes.txt").read_text() == "mine" and (run / "checkpoints" / "last.ckpt").read_bytes() == b"weights"

    out = tmp_path / "out"
    out.mkdir()  # an empty directory may be used
    main(["export", "--genotype", "DARTS_V2", "--out", str(out), *SMALL, "--overwrite"])
    main(["export", "--genotype", "PDARTS", "--out", str(out), *SMALL, "--overwrite", "--layers", "4"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dnas_export"] == 1 and summary["genotype"] == "PDARTS" and summary["options"]["layers"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]


# ---------------------------------------------------------------------------------------------- 3. one-line errors
def search_checkpoint() -> dict:
    """The layout of a dnas.DARTS search checkpoint (keys of a real ``last.ckpt``), as plain data."""
    return {
        "epoch": 0,
        "global_step": 24,
        "state_dict": {
            "supernet.alpha_normal": torch.zeros(14, 8),
            "supernet.alpha_reduce": torch.zeros(14, 8),
            "supernet.stem.0.weight": torch.zeros(6, 1, 3, 3),
        },
        "hparams_name": "kwargs",
        "hyper_parameters": {
            "_class_path": "dnas.DARTS",
            "unrolled": False,
            "grad_clip": 5.0,
            "num_classes": None,
            "export_on_fit_end": True,
            "export_init_channels": None,
            "export_layers": None,
        },
        "dnas_genotype": load("DARTS_V2").to_dict(),
    }


def test_search_checkpoint_says_what_it_is_and_how_to_export_it(tmp_path, capsys):
    ckpt = tmp_path / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save(search_checkpoint(), ckpt)
    genotype_json = str(tmp_path / "quickstart" / "version_0" / "genotype.json")
    for extra in ([], ["--genotype", "DARTS_V2"]):
        code, err = export(["--ckpt", str(ckpt), "--out", str(tmp_path / "o"), *extra], capsys)
        assert_one_line(
            code, err, "is a search checkpoint", "supernet.*", f"--genotype {genotype_json}", "dnas.Retrain"
        )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("module", ["dnas.GDAS", "dnas.ProxylessNAS", "dnas.search.gdas.GDAS"])
def test_every_search_module_is_recognised_by_its_hyper_parameters(tmp_path, capsys, module):
    ckpt = search_checkpoint()
    ckpt["state_dict"] = {"stem.0.weight": torch.zeros(6, 1, 3, 3)}  # no supernet.* keys: the class path tells
    ckpt["hyper_parameters"]["_class_path"] = module
    torch.save(ckpt, tmp_path / "last.ckpt")
    code, err = export(["--ckpt", str(tmp_path / "last.ckpt"), "--out", str(tmp_path / "o")], capsys)
    assert_one_line(code, err, "is a search checkpoint", f"hyper-parameters of {module}")


def test_each_unreadable_checkpoint_gives_one_line(tmp_path, capsys):
    torch.save(retrain_checkpoint("PDARTS", load("PDARTS")), tmp_path / "good.ckpt")
    raw = (tmp_path / "good.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(raw[: len(raw) // 2])
    corrupt = bytearray(raw)
    start = raw.index(b"\x80\x02", raw.index(b"data.pkl")) + 2  # inside the pickle of the dict
    corrupt[start : start + 16] = b"\xff" * 16
    (tmp_path / "corrupt.ckpt").write_bytes(bytes(corrupt))
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint at all\n" * 10)
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "folder.ckpt").mkdir()
    cases = [
        ("truncated.ckpt", "is truncated"),
        ("corrupt.ckpt", "is corrupt or not a PyTorch checkpoint"),
        ("garbage.ckpt", "is corrupt or not a PyTorch checkpoint"),
        ("empty.ckpt", "is empty (0 bytes"),
        ("missing.ckpt", "does not exist"),
        ("folder.ckpt", "is a directory, not a regular file"),
    ]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.ckpt")  # opening it for reading would wait for a writer forever
        cases.append(("fifo.ckpt", "is a FIFO (named pipe), not a regular file"))
    if Path("/dev/zero").exists():
        cases.append(("/dev/zero", "is a device, not a regular file"))  # reading it would never end
    out = tmp_path / "out"
    for name, message in cases:
        code, err = export(["--ckpt", str(tmp_path / name), "--out", str(out)], capsys)
        assert_one_line(code, err, message, repr(str(tmp_path / name)), "pass" if "corrupt" in message else "")
        assert not out.exists()


def test_unwritable_output_paths_give_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    for out in (tmp_path / "a_file" / "out", tmp_path / "a_file" / "deeper" / "out"):
        code, err = export(["--genotype", "DARTS_V2", "--out", str(out), *SMALL], capsys)
        assert_one_line(code, err, f"cannot create output {str(out)!r}", f"{str(tmp_path / 'a_file')!r} is a file")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    if os.geteuid() != 0:  # root writes anyway: then simulate the refusal below only
        readonly.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            code, err = export(["--genotype", "DARTS_V2", "--out", str(readonly / "out"), *SMALL], capsys)
        finally:
            readonly.chmod(stat.S_IRWXU)
        assert_one_line(code, err, "cannot create output", f"no permission to write in {str(readonly)!r}")

    def denied(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(Path(dir) / ".out.x.tmp"))

    monkeypatch.setattr("tempfile.mkdtemp", denied)
    code, err = export(["--genotype", "DARTS_V2", "--out", str(readonly / "out"), *SMALL], capsys)
    assert_one_line(code, err, f"cannot create output {str(readonly / 'out')!r}", f"write in {str(readonly)!r}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "readonly"] and not any(readonly.iterdir())
