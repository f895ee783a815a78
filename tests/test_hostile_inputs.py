"""Hostile or broken inputs to ``dnas fit``: checkpoints (``--ckpt_path``, ``init_from``) and ``--config`` files.

Each gets one ``dnas: error:`` line (exit code 2) naming the file and the problem, before training, and a checkpoint
holding pickled code never runs it, whether it is a local file or a URL.
"""

from __future__ import annotations

import functools
import http.server
import os
import pathlib
import re
import threading
from pathlib import Path

import pytest
import torch
import yaml

import dnas.io as dio
from dnas.cli import DnasCLI

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
TINY = [
    "fit", "--config", QUICKSTART, "--model.init_args.supernet.init_args.init_channels", "2",
    "--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false",
]  # fmt: skip


class Touch:
    """Unpickling this runs ``Path(marker).touch()``: the stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path(self.marker).touch, ())


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the quickstart config writes under ./logs
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # torch.hub's download cache
    return tmp_path


@pytest.fixture
def evil(workdir):
    """``(checkpoint file with pickled code, marker file its code would create)``."""
    marker = workdir / "pwned"
    path = workdir / "evil.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "global_step": 0, "payload": Touch(marker)}, path)
    return path, marker


@pytest.fixture
def serve(workdir):
    """Serve ``workdir`` over HTTP on loopback; yields ``url(name)``."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(workdir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield lambda name: f"http://127.0.0.1:{server.server_address[1]}/{name}"
    server.shutdown()
    server.server_close()


def _one_error_line(code, err: str) -> str:
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("dnas: error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


# ---------------------------------------------------------------------------------------------- pickled code
def test_ckpt_path_url_with_pickled_code_is_refused_not_run(evil, serve, run_cli):
    path, marker = evil
    url = serve(path.name)
    line = _one_error_line(*run_cli([*TINY, "--ckpt_path", url])[::2])
    assert url in line
    assert "contains pickled code" in line and "weights_only=True" in line
    assert not marker.exists()


def test_ckpt_path_local_file_with_pickled_code_is_refused_not_run(evil, run_cli):
    path, marker = evil
    line = _one_error_line(*run_cli([*TINY, "--ckpt_path", str(path)])[::2])
    assert str(path) in line and "contains pickled code" in line and "weights_only=True" in line
    assert not marker.exists()


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_other_subcommands_refuse_pickled_code_too(evil, run_cli, subcommand):
    path, marker = evil
    line = _one_error_line(*run_cli([subcommand, *TINY[1:], "--ckpt_path", str(path)])[::2])
    assert "contains pickled code" in line
    assert not marker.exists()


def test_weights_only_false_is_refused(workdir, run_cli):
    good = workdir / "good.ckpt"
    torch.save({"state_dict": {}}, good)
    line = _one_error_line(*run_cli([*TINY, "--ckpt_path", str(good), "--weights_only", "false"])[::2])
    assert "--weights_only false" in line and "weights_only=True" in line


def test_init_from_with_pickled_code_is_refused_before_training(evil, run_cli):
    path, marker = evil
    sel = ["--trainer.callbacks+=dnas.callbacks.PerturbationSelection", f"--trainer.callbacks.init_from={path}"]
    line = _one_error_line(*run_cli([*TINY, *sel])[::2])
    assert f"init_from checkpoint {str(path)!r} contains pickled code" in line
    assert not marker.exists()


def test_init_from_url_with_pickled_code_is_refused(evil, serve, run_cli):
    path, marker = evil
    url = serve(path.name)
    sel = ["--trainer.callbacks+=dnas.callbacks.PerturbationSelection", f"--trainer.callbacks.init_from={url}"]
    line = _one_error_line(*run_cli([*TINY, *sel])[::2])
    assert url in line and "contains pickled code" in line
    assert not marker.exists()


def test_atomic_checkpoint_io_refuses_pickled_code_whatever_weights_only_says(evil):
    path, marker = evil
    for weights_only in (None, True):
        with pytest.raises(dio.CheckpointError, match="contains pickled code"):
            dio.AtomicCheckpointIO().load_checkpoint(path, weights_only=weights_only)
    with pytest.raises(dio.CheckpointError, match="weights_only=False"):
        dio.AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- broken files
def _valid_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.arange(4096.0)}, "epoch": 1}, buf)
    return buf.getvalue()


def _corrupt(data: bytes) -> bytes:
    at = data.index(b"\x00\x00\x80\x3f")  # inside the tensor record (1.0 as float32)
    return data[:at] + bytes(b ^ 0xFF for b in data[at : at + 64]) + data[at + 64 :]


BROKEN = {
    "missing": (None, "does not exist"),
    "empty": (b"", "is empty (0 bytes)"),
    "truncated": (lambda d: d[: len(d) // 2], "truncated"),
    "corrupt": (_corrupt, "is corrupt: the CRC of its record"),
    "text": (lambda d: b"not a checkpoint\n", "not a torch checkpoint"),
    "directory": ("dir", "is a directory"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_ckpt_path_gives_one_line_naming_file_and_problem(workdir, run_cli, case):
    content, expected = BROKEN[case]
    path = workdir / f"{case}.ckpt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content(_valid_bytes()) if callable(content) else content)
    line = _one_error_line(*run_cli([*TINY, "--ckpt_path", str(path)])[::2])
    assert repr(str(path)) in line and expected in line
    assert not (workdir / "logs").exists()  # refused before the run started


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "corrupt"])
def test_broken_checkpoint_urls_are_named_too(workdir, serve, case):
    content, expected = BROKEN[case]
    if content is not None:
        (workdir / f"{case}.ckpt").write_bytes(content(_valid_bytes()) if callable(content) else content)
    url = serve(f"{case}.ckpt")
    with pytest.raises(dio.CheckpointError, match=re.escape(expected)) as err:
        dio.load_checkpoint(url)
    assert url in str(err.value)
    (workdir / "valid.ckpt").write_bytes(_valid_bytes())
    assert torch.equal(dio.load_checkpoint(serve("valid.ckpt"))["state_dict"]["w"], torch.arange(4096.0))


def test_own_search_checkpoint_resumes_through_the_safe_loader(workdir, run_cli):
    """A checkpoint the quickstart writes (hyperparameters, callback and RNG state) is plain data."""
    fit = ["fit", "--config", QUICKSTART, "--model.init_args.supernet.init_args.init_channels", "2"]
    fit += ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]
    fit += ["--trainer.enable_progress_bar", "false"]
    code, _, err = run_cli(fit)
    assert code == 0, err[-3000:]
    last = workdir / "logs" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    ckpt = dio.load_checkpoint(last)
    assert {"state_dict", "hyper_parameters", "callbacks", "dnas_rng", "dnas_genotype"} <= set(ckpt)
    code, _, err = run_cli([*fit, "--trainer.max_epochs", "2", "--ckpt_path", str(last)])
    assert code == 0, err[-3000:]
    assert "dnas: error" not in err


# ---------------------------------------------------------------------------------------------- config files
def test_empty_config_file_is_named_as_empty(workdir, run_cli):
    for name, text in (("empty.yaml", ""), ("comments.yaml", "# nothing here\n\n---\n")):
        (workdir / name).write_text(text)
        line = _one_error_line(*run_cli(["fit", "--config", str(workdir / name)])[::2])
        assert repr(str(workdir / name)) in line and "is empty" in line


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["directory", "fifo", "device"])
def test_non_regular_config_files_are_refused_before_reading(workdir, run_cli, kind):
    if kind == "directory":
        path, expected = workdir / "cfg.d", "is a directory"
        path.mkdir()
    elif kind == "fifo":
        path, expected = workdir / "cfg.fifo", "is a FIFO"
        os.mkfifo(path)  # reading it would block forever
    else:
        path, expected = Path("/dev/zero"), "is not a regular file"  # reading it would never end
    for args in (["fit", "--config", str(path)], ["fit", f"--config={path}"], ["fit", "-c", str(path)]):
        line = _one_error_line(*run_cli(args)[::2])
        assert repr(str(path)) in line and expected in line


def test_oversized_config_file_is_refused(workdir, run_cli):
    big = workdir / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(16 * 2**20 + 1)  # sparse: no disk used
    line = _one_error_line(*run_cli(["fit", "--config", str(big)])[::2])
    assert repr(str(big)) in line and "larger than 16 MiB" in line


# ---------------------------------------------------------------------------------------------- int vs float
def test_limit_val_batches_1_from_the_cli_means_one_batch(workdir, run_cli):
    code, text, err = run_cli(["fit", "--config", QUICKSTART, "--trainer.limit_val_batches", "1", "--print_config"])
    assert code == 0, err
    limit = yaml.safe_load(text)["trainer"]["limit_val_batches"]
    assert limit == 1 and isinstance(limit, int)
    (workdir / "o.yaml").write_text("trainer:\n  limit_train_batches: 1\n  val_check_interval: 1\n")
    args = ["--config", QUICKSTART, "--config", "o.yaml", "--trainer.limit_test_batches", "1.0"]
    args += ["--trainer.limit_predict_batches", "0.5", "--trainer.limit_val_batches", "1"]
    cli = DnasCLI(args=args, run=False)
    t = cli.trainer
    assert type(t.limit_val_batches) is int and t.limit_val_batches == 1  # one batch
    assert type(t.limit_train_batches) is int and t.limit_train_batches == 1
    assert type(t.val_check_interval) is int and t.val_check_interval == 1  # every batch, not every epoch
    assert type(t.limit_test_batches) is float and t.limit_test_batches == 1.0  # all batches
    assert t.limit_predict_batches == 0.5
