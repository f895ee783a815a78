"""Errors during instantiation: dnas' own checks are one ``dnas: error:`` line, a user's bug keeps its traceback."""

import textwrap

import pytest

USER_MODULE = textwrap.dedent(
    """
    import pytorch_lightning as pl


    class Buggy(pl.LightningModule):
        def __init__(self, kind: str = "a"):
            super().__init__()
            table = {"b": 1}
            self.width = table[kind]  # a bug in the user's own code: KeyError


    class BuggyValue(pl.LightningModule):
        def __init__(self, n: int = 2):
            super().__init__()
            self.a, self.b = range(n + 1)  # ValueError: too many values to unpack


    class BuggyType(pl.LightningModule):
        def __init__(self, n: int = 2):
            super().__init__()
            self.width = n + "1"  # TypeError
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_user_models.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_user_models"


def _args(tmp_path, model: str) -> list[str]:
    return [
        "fit",
        "--model",
        model,
        "--data",
        "dnas.data.DigitsDataModule",
        "--trainer.fast_dev_run",
        "1",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.logger",
        "false",
    ]


@pytest.mark.parametrize(("name", "error"), [("Buggy", KeyError), ("BuggyValue", ValueError), ("BuggyType", TypeError)])
def test_a_bug_in_a_users_module_keeps_its_traceback(tmp_path, run_cli, user_module, name, error):
    with pytest.raises(error) as info:
        run_cli(_args(tmp_path, f"{user_module}.{name}"))
    # the traceback reaches into the user's file
    assert any(entry.path.name == "my_user_models.py" for entry in info.traceback)


def test_a_dnas_check_in_a_constructor_stays_one_line(tmp_path, run_cli):
    args = [
        "fit",
        "--config",
        "configs/quickstart.yaml",
        "--model.init_args.arch_warmup_epochs",
        "-1",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.logger",
        "false",
    ]
    code, _, err = run_cli(args)
    lines = [line for line in err.splitlines() if line.startswith("dnas: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "arch_warmup_epochs must be >= 0, got -1" in lines[0]
