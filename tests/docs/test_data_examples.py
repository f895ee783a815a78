"""docs/data.md: its wrapper example runs, and the two worked examples (a CSV table, a folder of images) search.

The examples run as their configs say, from a copy of their folder (so ``class_path: csv_data.CSVDataModule`` imports
from the current directory), with fewer epochs and batches than a user would run.
"""

import json
import re
import runpy
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"]


def test_wrapping_a_lightning_datamodule_runs_as_written(capsys):
    text = (ROOT / "docs" / "data.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "class SearchOnMyData" in b]
    exec(compile(code, "docs/data.md", "exec"), {"__name__": "docs_data"})
    out = capsys.readouterr().out.splitlines()
    assert out == ["{'train': (32, 1, 8, 8), 'arch': (32, 1, 8, 8)}", "128 128"]


def run_example(name, tmp_path, monkeypatch, run_cli, make_args, epochs):
    work = tmp_path / name
    shutil.copytree(ROOT / "examples" / name, work)
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))  # `dnas` imports from the current directory (tested in test_console.py)
    maker = next(work.glob("make_*.py"))
    monkeypatch.setattr(sys, "argv", [maker.name, *make_args])
    runpy.run_path(str(maker), run_name="__main__")
    code, _, err = run_cli(["fit", "--config", "search.yaml", f"--trainer.max_epochs={epochs}", *SHORT])
    assert code == 0, err
    (run,) = (work / "logs").glob("*/version_0")
    for file in ("genotype.json", "report.html", "export/model.py", "config.yaml"):
        assert (run / file).is_file(), file
    return run


def test_csv_table_example(tmp_path, monkeypatch, run_cli):
    run = run_example("csv_table", tmp_path, monkeypatch, run_cli, [], epochs=2)
    genotype = json.loads((run / "genotype.json").read_text())
    assert genotype["space"] == "tabular" and genotype["meta"]["build"]["input_shape"] == [13]
    sys.modules.pop("csv_data", None)


def test_image_folder_example(tmp_path, monkeypatch, run_cli):
    run = run_example("image_folder", tmp_path, monkeypatch, run_cli, ["--per_class", "12"], epochs=1)
    assert len(list((tmp_path / "image_folder" / "digits_png" / "train").iterdir())) == 10  # one folder per class
    genotype = json.loads((run / "genotype.json").read_text())
    assert genotype["space"] == "darts" and genotype["meta"]["build"]["input_shape"] == [1, 8, 8]


@pytest.mark.parametrize("name", ["csv_table", "image_folder"])
def test_example_configs_name_their_folder_and_command(name):
    text = (ROOT / "examples" / name / "search.yaml").read_text()
    assert "dnas fit --config search.yaml" in text and (ROOT / "docs" / "data.md").read_text().count(name) >= 1
