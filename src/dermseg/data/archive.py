"""Safe extraction of downloaded zip archives.

An archive is checked in full before anything is written: every entry must be a
plain file or folder with a relative name that stays inside the destination
(no absolute path, no ``..``, no symbolic link or device), and the archive must
not expand to an absurd size (a zip bomb). It is then extracted into a hidden
temporary folder beside its destination and each top-level entry is renamed into
place, so an archive that turns out corrupt half-way (a CRC error) leaves nothing
behind. Reading every entry checks its CRC, which is the test ``ZipFile.testzip``
does, without reading a 10 GB archive twice.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Collection
from pathlib import Path

from dermseg.errors import DermsegError

logger = logging.getLogger(__name__)

#: Largest total size an archive may expand to (the largest ISIC 2018 archive holds ~11 GB).
MAX_EXTRACTED_BYTES: int = 64 * 1024**3

#: Largest compression ratio accepted for an entry; JPEG and PNG files barely compress (~1),
#: text files reach ~10, zip bombs reach 1000 and more.
MAX_COMPRESSION_RATIO: float = 200.0

#: Entries smaller than this are not held to the ratio (a small blank file compresses well).
RATIO_MIN_BYTES: int = 1024 * 1024

#: Largest number of entries (the ISIC 2018 Task 2 training masks are ~13,000 files).
MAX_ENTRIES: int = 1_000_000

#: Entries some archivers add that are never data.
_JUNK = re.compile(r"(^|/)(__MACOSX(/|$)|\.DS_Store$)")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1024 * 1024


class ArchiveError(DermsegError):
    """A downloaded archive is corrupt or unsafe to extract."""


class CorruptArchiveError(ArchiveError):
    """The archive is not a readable zip, or an entry fails its CRC check."""


class UnsafeArchiveError(ArchiveError):
    """An entry would land outside the destination, is a link or device, or the archive is a zip bomb."""


def _entry_parts(info: zipfile.ZipInfo, archive: Path) -> tuple[str, ...]:
    """The relative path components of ``info``, or UnsafeArchiveError when it is not a safe entry."""
    name = info.filename
    unsafe = lambda why: UnsafeArchiveError(f"entry {name!r} {why}; nothing was extracted", archive)  # noqa: E731
    normalised = name.replace("\\", "/")  # a Windows separator counts as one here
    if normalised.startswith("/") or _DRIVE.match(normalised):
        raise unsafe("has an absolute path")
    parts = tuple(p for p in normalised.split("/") if p not in ("", "."))
    if ".." in parts:
        raise unsafe("has a '..' component")
    if not parts:
        raise unsafe("has an empty name")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise unsafe("is a symbolic link")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise unsafe("is not a plain file or folder")
    return parts


def check_members(
    zf: zipfile.ZipFile,
    archive: Path,
    max_extracted_bytes: int = MAX_EXTRACTED_BYTES,
    max_ratio: float = MAX_COMPRESSION_RATIO,
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Check every entry of ``zf`` before anything is extracted.

    Args:
        zf: the open archive.
        archive: its path, named in the errors.
        max_extracted_bytes: largest total uncompressed size accepted.
        max_ratio: largest uncompressed/compressed ratio accepted for an entry of 1 MiB or more.

    Returns:
        ``(entry, path components)`` for each entry to extract, junk entries (``__MACOSX``) left out.

    Raises:
        UnsafeArchiveError: an unsafe entry, too many entries, or a zip bomb.
    """
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise UnsafeArchiveError(f"holds {len(infos)} entries, more than {MAX_ENTRIES}", archive)
    members = []
    total = 0
    for info in infos:
        parts = _entry_parts(info, archive)
        if _JUNK.search("/".join(parts)):
            continue
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= RATIO_MIN_BYTES and ratio > max_ratio:
            raise UnsafeArchiveError(
                f"entry {info.filename!r} expands {ratio:.0f} times (limit {max_ratio:g}): "
                "a zip bomb; nothing was extracted",
                archive,
            )
        members.append((info, parts))
    if total > max_extracted_bytes:
        raise UnsafeArchiveError(
            f"would expand to {total} bytes, more than the limit of {max_extracted_bytes}: "
            "a zip bomb; nothing was extracted",
            archive,
        )
    return members


def _copy_entry(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, archive: Path, count: Callable[[int], None]
) -> None:
    """Write one entry, refusing to write more than its declared size."""
    written = 0
    with zf.open(info) as src, open(target, "wb") as dst:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise UnsafeArchiveError(f"entry {info.filename!r} is larger than it declares", archive)
            dst.write(chunk)
            count(len(chunk))


def safe_extract(
    archive: str | Path,
    dest: str | Path,
    *,
    max_extracted_bytes: int = MAX_EXTRACTED_BYTES,
    max_ratio: float = MAX_COMPRESSION_RATIO,
    reserved: Collection[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Extract a zip archive into ``dest`` safely and all at once.

    Top-level entries already in ``dest`` with the same name are replaced.

    Args:
        archive: the zip file.
        dest: the folder to extract into (created if needed).
        max_extracted_bytes: largest total uncompressed size accepted.
        max_ratio: largest compression ratio accepted for an entry of 1 MiB or more.
        reserved: top-level names the archive may not replace (the archive itself, a manifest).
        progress: called with ``(bytes written, total bytes)`` as entries are written.

    Returns:
        The names of the top-level files and folders placed in ``dest``, sorted.

    Raises:
        CorruptArchiveError: not a zip, or an entry fails its CRC check.
        UnsafeArchiveError: see :func:`check_members`; nothing is written.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, EOFError, ValueError) as err:
        raise CorruptArchiveError(f"not a valid zip archive ({err})", archive) from None
    with zf:
        members = check_members(zf, archive, max_extracted_bytes, max_ratio)
        for info, parts in members:
            if parts[0] in reserved:
                raise UnsafeArchiveError(
                    f"entry {info.filename!r} would replace {parts[0]}; nothing was extracted", archive
                )
        total = sum(info.file_size for info, _ in members)
        done = 0

        def count(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
        new, old = tmp / "new", tmp / "old"  # the archive's names cannot clash with these two
        new.mkdir()
        old.mkdir()
        try:
            for info, parts in members:
                target = new.joinpath(*parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_entry(zf, info, target, archive, count)
            # Reading every entry checked its CRC; now move each top-level entry into place.
            names = sorted(p.name for p in new.iterdir())
            for name in names:
                final = dest / name
                if final.exists() or final.is_symlink():
                    logger.info("replacing %s", final)
                    os.replace(final, old / name)
                os.replace(new / name, final)
        except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as err:
            raise CorruptArchiveError(f"corrupt archive ({err})", archive) from None
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as err:
            raise CorruptArchiveError(f"entries conflict with each other ({err.filename})", archive) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return names


def remove_stale_temporaries(dest: Path) -> None:
    """Remove the temporary extraction folders an interrupted run left in ``dest``."""
    if dest.is_dir():
        for entry in dest.glob(".extract-*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
