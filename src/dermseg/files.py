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
from collections.abc import Callable, Iterator, Sequence
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
    return temporary_target(name) is not None


def temporary_target(name: str) -> str | None:
    """The file a temporary file of :func:`atomic_path` was to become (``None``: not one)."""
    m = _TEMPORARY.match(name)
    if m is None or not m.group("name").endswith(m.group("suffix") or ""):
        return None
    return m.group("name")


def remove_temporaries(folder: Path, owned: Callable[[str], bool] | None = None) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` left in ``folder`` (a writer killed mid-write).

    Only dermseg's own pattern (:func:`is_temporary`) is touched; a folder that cannot be
    listed is left alone.

    Args:
        folder: where to look.
        owned: which target file names are the caller's (``None``: all): writers sharing a
            folder (shards of one run) each remove only their own, never another's file in flight.

    Returns:
        The files removed.
    """
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False)]
    except OSError:
        return []
    targets = {name: temporary_target(name) for name in names}
    removed = [
        folder / name
        for name, target in targets.items()
        if target is not None and (owned is None or owned(target))
    ]
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
            temps.append(_temporary_beside(path))
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


def _temporary_beside(path: Path) -> Path:
    """A new empty temporary file beside ``path``, named as :func:`atomic_path` names them."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


def write_new(path: str | Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` complete, unless ``path`` exists: then leave it as it is.

    Safe between processes: of writers racing to create ``path`` exactly one wins, and no
    reader ever sees a part of the file (it is written and flushed under a temporary name,
    then hard-linked onto ``path``, which fails if ``path`` exists). Where the file system
    has no hard links it is created with ``O_EXCL`` and written in place.

    Returns:
        Whether ``path`` was written (``False``: it existed).

    Raises:
        OutputError: the disk is full (names ``path``).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with writing(target):
        tmp = _temporary_beside(target)
        try:
            tmp.write_bytes(data)
            os.chmod(tmp, _mode())
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                return _write_exclusive(target, data)
        finally:
            tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)
    return True


def _write_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``O_EXCL`` and write ``data`` into it (``False``: it existed)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return True
