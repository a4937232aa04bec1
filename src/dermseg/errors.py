"""The dermseg error family.

Library code raises these; only the CLI turns them into a one-line message and
exit code 2. Every error about a user file names that file.
"""

from __future__ import annotations

from pathlib import Path


class DermsegError(Exception):
    """Base of every error dermseg reports to a user.

    Args:
        message: what is wrong, in a few words.
        path: the file or folder concerned, if any; it is put first in ``str(err)``.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class DataError(DermsegError):
    """An image, mask or dataset folder is missing, unreadable or malformed."""


class ConfigError(DermsegError):
    """A configuration file or option is invalid."""
