"""What the ``dnas`` command prints while it runs: its own lines, not other libraries' noise, never glued to a bar.

Used by :func:`dnas.cli.main` around a LightningCLI run; everything it changes is restored on exit.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

NOISE_WARNINGS = (
    # dnas hands LightningCLI its arguments on purpose (tools and tests run it in-process): not a mistake
    "LightningCLI's args parameter is intended to run",
    # Lightning's own pytree helper still builds LeafSpec, which torch deprecated: nothing a user can change
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)
"""Warnings (message regexes) that say nothing to a dnas user; hidden while the CLI runs."""

NOISE_LOGS = {
    "pytorch_lightning.utilities.rank_zero": "💡 Tip:",  # an advertisement for a cloud logger
    "torch.utils.cpp_extension": "No CUDA runtime is found",  # torch.utils.benchmark's import on a CPU-only machine
}
"""Log lines that say nothing to a dnas user: logger name -> start of the message; hidden while the CLI runs."""


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning on its own line, above a progress bar rather than glued to it.

    dnas' own warnings (a collapse, a checkpoint hint) are messages to the user, shown as ``dnas: warning: ...``
    without the source line; other libraries' keep their usual format.
    """
    from tqdm import tqdm

    if Path(filename).resolve().is_relative_to(Path(__file__).resolve().parent):
        text = f"dnas: warning: {message}"
    else:
        text = warnings.formatwarning(message, category, filename, lineno, line).rstrip("\n")
    tqdm.write(text, file=sys.stderr if file is None else file)


@contextlib.contextmanager
def console() -> Iterator[None]:
    """What the CLI prints while it runs: no third-party noise, and log lines and warnings above the progress bar.

    Lightning's progress bar (tqdm) redraws its line without a newline; a line printed by ``logging`` or
    ``warnings`` in between would be glued to it, so both go through ``tqdm.write`` (tqdm's ``logging_redirect_tqdm``
    for Lightning's log handler). Everything is restored on exit, so in-process callers keep their settings.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    filters = [
        (logging.getLogger(name), lambda record, p=prefix: not str(record.msg).startswith(p))  # any callable
        for name, prefix in NOISE_LOGS.items()
    ]
    for logger, drop in filters:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings(), logging_redirect_tqdm([logging.getLogger("pytorch_lightning")]):
            for pattern in NOISE_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            warnings.showwarning = show_warning
            yield
    finally:
        for logger, drop in filters:
            logger.removeFilter(drop)
