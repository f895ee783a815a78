"""Shared test fixtures."""

import contextlib
import io

import pytest

from dnas.cli import main


@pytest.fixture
def run_cli():
    """Run the ``dnas`` CLI in-process; returns ``(exit code, stdout, stderr)`` (exit code 0 when it returns)."""

    def run(args: list[str]) -> tuple[object, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code: object = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(args)
            except SystemExit as exc:
                code = exc.code
        return code, out.getvalue(), err.getvalue()

    return run
