"""What ``dnas`` prints: no third-party noise, lines never glued to the progress bar, one-line refusals before the run,
every command in ``dnas --help``, both flag spellings, and the current directory importable."""

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dnas.console import console, show_warning

ROOT = Path(__file__).resolve().parents[1]
NOISE = (
    "args parameter is intended",  # LightningCLI, about dnas passing args=
    "💡 Tip",  # Lightning's cloud-logger advert
    "LeafSpec",  # torch's deprecation inside Lightning
    "Trying to infer the `batch_size`",  # Lightning, when a batch holds halves of different sizes
    "No CUDA runtime is found",  # torch.utils.cpp_extension on CPU-only machines
    "warnings.warn(",  # a warning printed with its source line
)


@pytest.mark.slow  # a CLI fit
def test_a_tiny_fit_prints_no_noise_and_keeps_lines_off_the_progress_bar(tmp_path):
    """The ``dnas`` console script (made as pip makes it) from a fresh directory, with a datamodule defined there."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "dnas"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom dnas.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    (work / "local_data.py").write_text("from dnas.data import DigitsDataModule as LocalDigits  # noqa: F401\n")
    cuda_home = tmp_path / "cuda"  # makes torch.utils.cpp_extension look for a CUDA runtime if anything imports it
    cuda_home.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_HOME": str(cuda_home)}
    cmd = [str(script), "fit", "--config", str(ROOT / "configs" / "quickstart.yaml")]
    cmd += ["--trainer.max_epochs=2", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    cmd += ["--trainer.default_root_dir=logs", "--trainer.logger.init_args.save_dir=logs"]
    # the data class comes from the current directory; halves of different sizes (32 and 16) per step
    cmd += ["--data=local_data.LocalDigits", "--data.batch_size=32", "--data.arch_batch_size=16"]
    run = subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = run.stdout
    assert run.returncode == 0, out[-4000:]
    assert [n for n in NOISE if n in out] == []
    lines = re.findall(r"(.?)(epoch [01]: Genotype\[darts\])", out)
    assert len(lines) == 2 and all(before in ("\n", "\r", "") for before, _ in lines), lines  # each on its own line
    assert (work / "logs" / "quickstart" / "version_0" / "report.html").is_file()


def test_console_hides_noise_and_prints_dnas_warnings_in_one_line(capsys):
    cpp = logging.getLogger("torch.utils.cpp_extension")
    with console():
        cpp.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local/cuda")
        cpp.warning("something else")
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        show_warning(UserWarning("cell 'normal' has 5 parameter-free ops"), UserWarning, str(ROOT / "dnas/x.py"), 3)
        show_warning(UserWarning("their problem"), UserWarning, "/elsewhere/lib.py", 7)
    err = capsys.readouterr().err
    assert "No CUDA runtime" not in err and "something else" in err and "LeafSpec" not in err
    assert "dnas: warning: cell 'normal' has 5 parameter-free ops\n" in err
    assert "/elsewhere/lib.py:7: UserWarning: their problem" in err
    assert not cpp.filters  # restored


def test_lut_prints_no_lightningcli_args_warning(tmp_path, run_cli, recwarn):
    config = str(ROOT / "configs" / "quickstart_tabular.yaml")
    code, out, err = run_cli(["lut", "--config", config, "--metric", "params", "--out", str(tmp_path / "t.json")])
    assert code == 0, err
    assert [n for n in NOISE if n in out + err] == []
    assert not [w for w in recwarn if "args parameter" in str(w.message)]


def test_help_lists_every_command(run_cli):
    code, out, _ = run_cli(["--help"])
    assert code == 0
    usage = " ".join(out.split("\n\n")[0].split())  # argparse wraps the usage paragraph at the terminal width
    assert usage.startswith("usage: dnas") and "{fit,validate,test,predict,baseline,export,lut,plot}" in usage
    for tool in ("baseline", "export", "lut", "plot"):
        assert re.search(rf"^\s+{tool}\s+\S", out, flags=re.M), tool


@pytest.mark.parametrize(
    "module,underscore,dash,dest,value",
    [
        ("dnas.export.cli", ["--init_channels", "8"], ["--init-channels", "8"], "init_channels", 8),
        ("dnas.export.cli", ["--input_shape", "1", "40"], ["--input-shape", "1", "40"], "input_shape", [1, 40]),
        ("dnas.export.cli", ["--no_flops"], ["--no-flops"], "no_flops", True),
        ("dnas.viz.cli", ["--per_row", "3"], ["--per-row", "3"], "per_row", 3),
        ("dnas.latency.cli", ["--min_run_time", "0.1"], ["--min-run-time", "0.1"], "min_run_time", 0.1),
        ("dnas.latency.cli", ["--batch_size", "4"], ["--batch-size", "4"], "batch_size", 4),
    ],
)
def test_tool_flags_take_both_spellings(module, underscore, dash, dest, value):
    import importlib

    mod = importlib.import_module(module)
    parser = mod._measure_parser() if module == "dnas.latency.cli" else mod.build_parser()
    base = {"dnas.export.cli": ["--out", "x"], "dnas.viz.cli": ["DARTS_V2"], "dnas.latency.cli": []}[module]
    assert getattr(parser.parse_args(base + underscore), dest) == value
    assert getattr(parser.parse_args(base + dash), dest) == value


def test_a_missing_latency_table_is_one_line_before_the_run(tmp_path, run_cli):
    config = str(ROOT / "configs" / "quickstart_fbnet.yaml")
    table = tmp_path / "lut.json"
    code, _, err = run_cli(
        ["fit", "--config", config, f"--model.init_args.latency_loss.init_args.table={table}"]
        + [f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    )
    assert code == 2
    (line,) = err.strip().splitlines()[-1:]
    assert line == (
        f"dnas: error: cost table {str(table)!r} does not exist; measure it first: dnas lut --config {config} "
        f"--out {table}"
    )
    assert "Traceback" not in err and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_refused_argument_combination_is_one_line_and_leaves_no_run_directory(tmp_path, run_cli):
    where = [f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    small = ["--model.init_args.supernet.init_args.steps=2", "--model.init_args.supernet.init_args.init_channels=4"]
    config = str(ROOT / "configs" / "quickstart_pt.yaml")
    code, _, err = run_cli(["fit", "--config", config, "--trainer.max_epochs=3", *small, *where])
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("dnas: error: invalid configuration (ConfigError): Perturbation")
    assert "set trainer.max_epochs to search_epochs + " in err
    assert list(tmp_path.iterdir()) == []  # no logs/quickstart_pt/version_0 with only config.yaml in it
