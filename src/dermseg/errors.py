"""The dermseg error family.

Library code raises these; only the CLI turns them into a one-line message and
exit code 2. Every error about a user file names that file.
"""

from __future__ import annotations

import os
import reprlib
from pathlib import Path


def display_path(path: str | Path) -> str:
    """``path`` as text that any terminal or log can show.

    A file name that is not valid UTF-8 reaches Python with its bad bytes as lone
    surrogates, which cannot be printed; they are shown as ``\\xff`` escapes instead.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


#: How many characters of a user's value an error message shows.
SHOWN_CHARS = 80


def shown_value(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for an error message: at most ``limit`` characters, at a cost bounded
    whatever the value (a huge or deeply nested value is abbreviated, never formatted whole)."""
    short = reprlib.Repr()
    short.maxlevel = 3
    short.maxdict = short.maxlist = short.maxtuple = short.maxset = 6
    short.maxstring = short.maxother = short.maxlong = limit
    # repr() of an int of more than 4300 digits raises; a shorter one can still take a while
    short.repr_int = lambda x, _level: (
        repr(x) if x.bit_length() <= 256 else f"<a {x.bit_length()}-bit integer>"
    )
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(message: str) -> str:
    """``message`` on one line.

    PyTorch's DataLoader re-raises an error from a worker process as
    ``type("Caught X in DataLoader worker process N.\\nOriginal Traceback ...")``: what the
    user needs is the last line of that traceback, the original error's own text.
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught ") and "Traceback" in lines[1]:
        _name, _, text = lines[-1].partition(": ")
        return text or lines[-1]
    return "; ".join(lines)


class DermsegError(Exception):
    """Base of every error dermseg reports to a user.

    Args:
        message: what is wrong, in a few words (kept to one line).
        path: the file or folder concerned, if any; it is put first in ``str(err)``.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.message = _one_line(str(message))
        self.path = Path(path) if path is not None else None
        shown = f"{display_path(self.path)}: {self.message}" if self.path is not None else self.message
        super().__init__(shown)


class DataError(DermsegError):
    """An image, mask or dataset folder is missing, unreadable or malformed."""


class ConfigError(DermsegError):
    """A configuration file or option is invalid."""


class OutputError(DermsegError):
    """An output file cannot be written (the disk is full, a quota is reached)."""
