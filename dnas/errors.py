"""Errors dnas raises for problems the user fixes: a configuration value or an input file, never a bug.

The ``dnas`` CLI prints these as one line (exit status 2) wherever they are raised, also after instantiation (a
datamodule's ``prepare_data``/``setup``, a search module's ``setup``); any other exception keeps its traceback.
"""

from __future__ import annotations

import linecache
from pathlib import Path
from types import TracebackType

_DNAS_DIR = Path(__file__).resolve().parent


class ConfigError(ValueError):
    """A configuration value dnas checked is wrong; the message names the value and how to fix it."""

    kind = "invalid configuration"
    """What the CLI calls the problem in its one line (``dnas: error: <kind> (<class>): <message>``)."""


class DataError(ConfigError):
    """The input data on disk is unusable (a corrupt or incomplete data set); the message names the file."""

    kind = "unusable data"


class DataNotFoundError(DataError, FileNotFoundError):
    """The input data is not where the configuration points (also a ``FileNotFoundError``)."""

    kind = "data not found"


def one_line(text: object, limit: int = 800) -> str:
    """``text`` as one printable line for an error message.

    Line breaks (a parser's layout, or a file name or value a user gave) become spaces, runs of white space collapse,
    other control characters are escaped, and the result is cut at ``limit`` characters.
    """
    out = " ".join(str(text).split())
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in out)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _last_frame(err: BaseException) -> TracebackType | None:
    """The traceback entry of the frame that raised ``err``."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def constructor_error(err: BaseException) -> BaseException:
    """The error a constructor raised, not jsonargparse's multi-line wrapper around it.

    jsonargparse re-raises a constructor's ``ValueError("steps must be >= 1, got 0")`` inside "Does not validate
    against any of the Union subtypes ... Given value: Namespace(...)"; the first exception of the chain that was not
    raised in jsonargparse is the one that names the problem. Without one, ``err`` itself.
    """
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        tb = _last_frame(current)
        if tb is not None and "jsonargparse" not in Path(tb.tb_frame.f_code.co_filename).parts:
            return current
        current = current.__cause__ or current.__context__
    return err


def is_validation_error(err: BaseException, own_types: tuple[type[BaseException], ...]) -> bool:
    """Whether a constructor's error is a check that names a bad value (one line) rather than a bug (traceback).

    Validation errors are of ``own_types`` (dnas' and Lightning's ``MisconfigurationException``), an argument
    jsonargparse refused (raised in jsonargparse), and an error raised by a ``raise`` statement in dnas' own code (its
    argument checks: "steps must be >= 1, got 0"). Anything else — an error raised in a user's module, or one that is
    no deliberate check (a failed unpacking, a ``KeyError`` from a lookup) — is not, and keeps its traceback.
    """
    if isinstance(err, own_types):
        return True
    tb = _last_frame(err)
    if tb is None:
        return False
    filename = Path(tb.tb_frame.f_code.co_filename).resolve()
    if "jsonargparse" in filename.parts:
        return True
    line = linecache.getline(str(filename), tb.tb_lineno).strip()
    return filename.is_relative_to(_DNAS_DIR) and line.startswith("raise ")
