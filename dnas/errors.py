"""Errors dnas raises for problems the user fixes: a configuration value or an input file, never a bug.

The ``dnas`` CLI prints these as one line (exit status 2) wherever they are raised, also after instantiation (a
datamodule's ``prepare_data``/``setup``, a search module's ``setup``); any other exception keeps its traceback.
"""

from __future__ import annotations


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
