"""Hostile or mistaken inputs through the ``dnas`` CLI: one ``dnas: error:`` line (exit 2), or a normal result."""

import os
import pickle
import stat
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
SMALL = ["--model.init_args.supernet.init_args.init_channels", "2", "--trainer.enable_progress_bar", "false"]


def _fit(tmp_path, *extra: str) -> list[str]:
    out = ["--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path)]
    return ["fit", "--config", QUICKSTART, *SMALL, *out, *extra]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("dnas: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_in_channels_mismatch_names_both_numbers_and_the_fix(tmp_path, run_cli):
    code, _, err = run_cli(
        _fit(tmp_path, "--trainer.fast_dev_run", "1", "--model.init_args.supernet.init_args.in_channels", "3")
    )
    assert code == 2
    line = _one_error_line(err)
    assert "in_channels=3" in line and "DigitsDataModule" in line and "has in_channels=1" in line
    assert "--model.init_args.supernet.init_args.in_channels 1" in line


def test_zero_steps_is_rejected_at_construction(tmp_path, run_cli):
    code, _, err = run_cli(
        _fit(tmp_path, "--trainer.fast_dev_run", "1", "--model.init_args.supernet.init_args.steps", "0")
    )
    assert code == 2
    assert "steps must be >= 1, got 0" in _one_error_line(err)


def test_corrupt_cifar_batch_is_one_line_naming_the_file(tmp_path, run_cli):
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": b"\0" * 3072})[:50])
    data = ["--data", "dnas.data.CIFAR10DataModule", "--data.init_args.data_dir", str(tmp_path / "data")]
    data += ["--data.init_args.num_workers", "0", "--model.init_args.supernet.init_args.in_channels", "3"]
    code, _, err = run_cli(_fit(tmp_path, "--trainer.fast_dev_run", "1", *data))
    assert code == 2
    line = _one_error_line(err)
    assert str(folder / "data_batch_1") in line and "corrupt" in line and "download true" in line


def test_other_errors_in_setup_keep_their_traceback(tmp_path, run_cli, monkeypatch):
    from dnas.data import DigitsDataModule

    def broken(self):
        raise RuntimeError("not a configuration problem")

    monkeypatch.setattr(DigitsDataModule, "build_datasets", broken)
    with pytest.raises(RuntimeError, match="not a configuration problem"):
        run_cli(_fit(tmp_path, "--trainer.fast_dev_run", "1"))


def test_search_outputs_get_the_umask_mode(tmp_path, run_cli):
    old = os.umask(0o022)
    try:
        code, _, err = run_cli(
            _fit(
                tmp_path,
                "--trainer.max_epochs",
                "1",
                "--trainer.limit_train_batches",
                "1",
                "--trainer.limit_val_batches",
                "1",
            )
        )
    finally:
        os.umask(old)
    assert code == 0, err
    run = tmp_path / "quickstart" / "version_0"
    outputs = [run / "genotype.json", run / "checkpoints" / "last.ckpt", *run.glob("plots/*.png")]
    assert len(outputs) > 2
    assert {str(p.relative_to(run)): oct(stat.S_IMODE(p.stat().st_mode)) for p in outputs} == {
        str(p.relative_to(run)): "0o644" for p in outputs
    }
    assert not [p for p in run.rglob("*") if "dnas-tmp" in p.name or p.name.endswith(".tmp")]


@pytest.mark.parametrize("flag", ["--trainer.logger.init_args.save_dir", "--trainer.default_root_dir"])
def test_output_directory_that_cannot_be_created_is_one_line_before_the_run(tmp_path, run_cli, flag):
    (tmp_path / "a_file").write_text("not a directory")
    for bad in ("/proc/dnas_cannot_create_here", str(tmp_path / "a_file" / "logs")):
        limits = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]
        code, _, err = run_cli([*_fit(tmp_path, *limits), flag, bad])
        assert code == 2
        line = _one_error_line(err)
        assert "cannot create the output directory" in line and repr(bad) in line and flag in line
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.csv"))  # nothing ran
