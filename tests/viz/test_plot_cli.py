"""``dnas plot`` refuses bad options and unwritable outputs with one ``dnas plot: error:`` line and exit status 2."""

import os

import pytest

import dnas.viz.cli as plot_cli
from dnas.viz.cli import main as plot_main


def _refused(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        plot_main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("dnas plot: error: "), err
    assert message in err, err
    return err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--dpi", "0"], "--dpi must be in 1..600, got 0"),
        (["--dpi", "-5"], "--dpi must be in 1..600, got -5"),
        (["--dpi", "100000"], "--dpi must be in 1..600, got 100000"),
        (["--per_row", "0"], "--per_row must be >= 1, got 0"),
    ],
)
def test_bad_numbers_are_refused(tmp_path, capsys, option, message):
    _refused(capsys, ["FBNET_A", "--out", str(tmp_path / "p"), *option], message)
    assert not list(tmp_path.iterdir())


def test_output_directory_must_exist_and_be_a_directory(tmp_path, capsys):
    _refused(capsys, ["DARTS_V2", "--out", str(tmp_path / "missing" / "p")], "does not exist; create it first")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "afile").write_text("x")
    _refused(capsys, ["DARTS_V2", "--out", str(tmp_path / "afile" / "p")], "is not a directory")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_is_refused(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _refused(capsys, ["DARTS_V2", "--out", str(ro / "p")], "is not writable")
    finally:
        ro.chmod(0o755)


def test_unwritable_directory_and_write_failures_are_one_line(tmp_path, capsys, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(
        plot_cli.os, "access", lambda path, mode: str(path) != str(tmp_path) and real_access(path, mode)
    )
    _refused(capsys, ["DARTS_V2", "--out", str(tmp_path / "p")], f"output directory '{tmp_path}' is not writable")
    monkeypatch.setattr(plot_cli.os, "access", real_access)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "p.png"))

    monkeypatch.setattr(plot_cli, "render_genotype", denied)
    _refused(capsys, ["DARTS_V2", "--out", str(tmp_path / "p")], f"cannot write '{tmp_path / 'p.png'}': Permission")
