"""Atomic file writes: a file is either its old self or its complete new self, never half-written.

Every writer of user-visible outputs (masks, checkpoints, reports, ONNX files, caches) goes through
:func:`atomic_path` (one file) or :func:`atomic_paths` (files that belong together): write to a
temporary file beside the target, flush it to disk, rename it onto the target, flush the folder
entry.

File modes, one policy for every output: ``0666`` minus the umask (``0644`` under the usual
``022``), what a plain ``open(path, "w")`` gives, whatever the writer did to the temporary file
(``mkstemp`` makes it ``0600``; safetensors writes a file of its own).

A full disk (``ENOSPC``, quota, file size limit; torch.save's ``unexpected pos`` and
safetensors' ``No space left on device``, which say the same) becomes an
:class:`~dermseg.errors.OutputError` naming the target file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from dermseg.errors import OutputError

#: A temporary file of :func:`atomic_path`: ``.<name>.<8 random characters>.tmp<suffix of name>``.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>\.[^.]*)?$")

#: errno values that mean the file system has no room for what is being written.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries to disk (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file of :func:`atomic_path` (left by a killed writer)."""
    m = _TEMPORARY.match(name)
    return m is not None and m.group("name").endswith(m.group("suffix") or "")


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` left in ``folder`` (a writer killed mid-write).

    Only dermseg's own pattern (:func:`is_temporary`) is touched; a folder that cannot be
    listed is left alone.

    Returns:
        The files removed.
    """
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False)]
    except OSError:
        return []
    removed = [folder / name for name in names if is_temporary(name)]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def write_failure(err: BaseException, path: Path) -> OutputError | None:
    """The :class:`OutputError` that ``err``, raised while writing ``path``, stands for: ``None``
    unless it says the disk is full."""
    if isinstance(err, OSError) and err.errno in _FULL:
        return OutputError(f"cannot write: {os.strerror(err.errno).lower()}", path)
    text = str(err)
    if "No space left on device" in text:
        return OutputError("cannot write: no space left on device", path)
    if isinstance(err, RuntimeError) and "unexpected pos" in text:
        # torch.save's zip writer on a short write: in practice a full disk
        return OutputError("cannot write in full (torch.save: unexpected pos); is the disk full?", path)
    return None


def _mode() -> int:
    """The mode of a file created by ``open()``: 0666 minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a full disk while the block writes ``path`` into an :class:`OutputError` naming it."""
    try:
        yield
    except Exception as err:
        failure = write_failure(err, path)
        if failure is not None:
            raise failure from None
        raise


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | Path]) -> Iterator[list[Path]]:
    """Yield one temporary path beside each of ``paths``; rename them all onto ``paths`` on success.

    All of them are written and flushed before the first rename, so a failure (or a kill)
    while writing leaves none of the new files; the renames come last, together, in the order
    given. On error the temporary files are removed and ``paths`` are left as they were.

    Raises:
        OutputError: the disk is full (names the file; for a group written in one block, the
            first one unless the error names a temporary file: wrap each write in
            :func:`writing` to name it exactly).
    """
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
            os.close(fd)
            temps.append(Path(name))
        try:
            yield temps
        except Exception as err:
            by_temp = {str(t): p for t, p in zip(temps, targets, strict=True)}
            failure = write_failure(err, by_temp.get(str(getattr(err, "filename", "")), targets[0]))
            if failure is not None:
                raise failure from None
            raise
        mode = _mode()
        for path, tmp in zip(targets, temps, strict=True):
            with writing(path):
                os.chmod(tmp, mode)  # after the writer: it may have made the file anew
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
        for path, tmp in zip(targets, temps, strict=True):
            with writing(path):
                os.replace(tmp, path)
        for folder in dict.fromkeys(p.parent for p in targets):
            fsync_dir(folder)  # make the renames themselves durable (a power cut keeps old or new)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file is flushed to disk before the rename and given the mode of a file
    ``open()`` creates; on error it is removed and ``path`` is left as it was.

    Raises:
        OutputError: the disk is full (names ``path``).
    """
    with atomic_paths([path]) as (tmp,):
        yield tmp
