"""Shared test fixtures."""

import contextlib
import io
import os

import pytest
import torch

from dnas.cli import main

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core: each worker computes on one thread, or the workers oversubscribe the cores
    torch.set_num_threads(1)


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the tests marked ``slow`` first (stable order otherwise): under pytest-xdist a long test begun last
    would leave the other worker idle at the end of the run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
