"""Downloading the official ISIC 2018 archives, resumably, and unpacking them safely.

Each archive is fetched into ``<name>.part`` and renamed once complete, so an
interrupted download is resumed with an HTTP ``Range`` request (from the start when
the server ignores it). A complete archive is checked against the size the server
announced, hashed (SHA-256), then extracted by :func:`~dermseg.data.archive.safe_extract`,
which tests every entry's CRC and refuses unsafe entries. A manifest in the
destination (:data:`MANIFEST_NAME`) records each archive's size, hash and whether it
was extracted, so a rerun skips what is done without asking the server anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dermseg.data.archive import (
    MAX_COMPRESSION_RATIO,
    MAX_EXTRACTED_BYTES,
    ArchiveError,
    CorruptArchiveError,
    remove_stale_temporaries,
    safe_extract,
)
from dermseg.errors import ConfigError, DermsegError

if TYPE_CHECKING:  # the HTTP client is imported when a download starts: every command imports this module
    import http.client

logger = logging.getLogger(__name__)

#: Where the challenge archives are published.
ISIC2018_URL = "https://isic-challenge-data.s3.amazonaws.com/2018/"

#: The manifest written into the destination folder.
MANIFEST_NAME = "dermseg-download.json"

#: The parts a download can be restricted to, in challenge order.
PARTS: tuple[str, ...] = ("train", "val", "test")
_CHUNK = 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class DownloadError(DermsegError):
    """The data could not be fetched: host unreachable, HTTP error, interrupted transfer, disk full."""


@dataclass(frozen=True)
class Archive:
    """One official archive.

    Attributes:
        name: file name on the server.
        part: ``train``, ``val`` or ``test``.
        contents: what it holds, for people.
        approx_bytes: its approximate size, for planning disk space only (the server's
            ``Content-Length`` is what is checked).
    """

    name: str
    part: str
    contents: str
    approx_bytes: int


#: Every archive dermseg knows, by file name, in challenge order. The sizes are approximate.
ARCHIVES: dict[str, Archive] = {
    a.name: a
    for a in (
        Archive("ISIC2018_Task1-2_Training_Input.zip", "train", "images", 10_400_000_000),
        Archive("ISIC2018_Task2_Training_GroundTruth_v3.zip", "train", "attribute masks", 30_000_000),
        Archive("ISIC2018_Task1_Training_GroundTruth.zip", "train", "lesion masks", 26_000_000),
        Archive("ISIC2018_Task1-2_Validation_Input.zip", "val", "images", 230_000_000),
        Archive("ISIC2018_Task2_Validation_GroundTruth.zip", "val", "attribute masks", 1_000_000),
        Archive("ISIC2018_Task1_Validation_GroundTruth.zip", "val", "lesion masks", 1_000_000),
        Archive("ISIC2018_Task1-2_Test_Input.zip", "test", "images", 2_200_000_000),
        Archive("ISIC2018_Task2_Test_GroundTruth.zip", "test", "attribute masks", 10_000_000),
        Archive("ISIC2018_Task1_Test_GroundTruth.zip", "test", "lesion masks", 10_000_000),
    )
}


def archive_names(parts: Sequence[str] = PARTS, lesion_masks: bool = False) -> list[str]:
    """The archives a download of ``parts`` fetches, in challenge order.

    Args:
        parts: any of ``train``, ``val``, ``test`` (or one comma-separated string of them).
        lesion_masks: also the Task 1 lesion masks.

    Raises:
        ConfigError: an unknown or empty list of parts.
    """
    if isinstance(parts, str):
        parts = [p.strip() for p in parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ConfigError(
            f"unknown part(s) {', '.join(map(repr, unknown)) or '(none)'}; expected train, val, test"
        )
    return [
        a.name
        for a in ARCHIVES.values()
        if a.part in parts and (lesion_masks or a.contents != "lesion masks")
    ]


@dataclass
class DownloadResult:
    """What :func:`download_isic2018` did.

    Attributes:
        dest: the destination folder.
        downloaded: archives fetched (and extracted) this time.
        resumed: those among ``downloaded`` that continued an earlier partial download.
        extracted: archives extracted this time (downloaded now, or earlier but not yet extracted).
        skipped: archives already downloaded and extracted, left alone.
        bytes_received: bytes transferred this time.
    """

    dest: Path
    downloaded: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_received: int = 0


class _Manifest:
    """The JSON record of the archives in a destination folder, rewritten atomically on each change."""

    def __init__(self, dest: Path) -> None:
        self.path = dest / MANIFEST_NAME
        self.archives: dict[str, dict] = {}
        if self.path.is_file():
            try:
                self.archives = dict(json.loads(self.path.read_text()).get("archives", {}))
            except (ValueError, AttributeError, TypeError, OSError):
                logger.warning("%s is unreadable; starting a new one", self.path)

    def set(self, name: str, entry: dict | None) -> None:
        from dermseg.files import atomic_path

        if entry is None:
            self.archives.pop(name, None)
        else:
            self.archives[name] = entry
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({"archives": self.archives}, indent=2, sort_keys=True) + "\n")


def _manual_hint(dest: Path) -> str:
    return (
        f"download the archives by hand and unzip them into {dest} in the official layout "
        "(ISIC2018_Task1-2_Training_Input/, ISIC2018_Task2_Training_GroundTruth_v3/, ...)"
    )


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", err)
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return text.splitlines()[0]


class _Cut(Exception):
    """The transfer stopped before the end; the ``.part`` file holds what arrived."""


class _Restart(Exception):
    """The ``.part`` file does not match the file on the server; start again from zero."""


@dataclass
class _Transfer:
    """One archive being fetched into ``part``, hashed as it is written."""

    url: str
    part: Path
    entry: dict  # the manifest's record of this partial download: url, size, etag
    timeout: float
    save: Callable[[dict], None]  # records ``entry`` in the manifest
    report: Callable[[int, int | None], None]
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    hashed: int = 0  # bytes of ``part`` fed to ``hasher``
    received: int = 0  # bytes transferred, over all attempts
    resumed: bool = False

    def _rehash(self, offset: int) -> None:
        if self.hashed == offset:
            return
        self.hasher, self.hashed = hashlib.sha256(), 0
        with open(self.part, "rb") as fh:
            while self.hashed < offset and (chunk := fh.read(min(_CHUNK, offset - self.hashed))):
                self.hasher.update(chunk)
                self.hashed += len(chunk)

    def _open(self, dest: Path, offset: int) -> http.client.HTTPResponse | None:
        """Send the request; ``None`` when a 416 says the partial file is already complete."""
        import http.client
        import urllib.error
        import urllib.request

        headers = {"User-Agent": "dermseg", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self.entry.get("etag"):
                headers["If-Range"] = self.entry["etag"]  # a changed file is sent whole
        request = urllib.request.Request(self.url, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as err:
            err.close()
            if err.code == 416 and offset:
                match = re.match(r"bytes \*/(\d+)$", err.headers.get("Content-Range") or "")
                if match and int(match.group(1)) == offset and self.entry.get("size") in (None, offset):
                    return None  # an earlier run stopped after the last byte, before the rename
                raise _Restart from None
            raise DownloadError(
                f"{self.url}: the server answered HTTP {err.code} {err.reason}; the archive could not be "
                f"downloaded. Check the base URL, or {_manual_hint(dest)}"
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            raise DownloadError(
                f"cannot reach {self.url} ({_reason(err)}): the ISIC 2018 data could not be downloaded. "
                f"Check the network connection, or {_manual_hint(dest)}"
            ) from None

    def attempt(self, dest: Path) -> int:
        """Fetch the rest of the file; return its total size.

        Raises:
            _Cut: the connection broke, timed out or closed early.
            _Restart: the partial file is stale.
            DownloadError: the host is unreachable, answered an error, or the disk is too small.
        """
        import http.client

        offset = self.part.stat().st_size if self.part.is_file() else 0
        response = self._open(dest, offset)
        if response is None:
            self._rehash(offset)
            self.resumed = True
            return offset
        with response:
            if response.status == 206:
                match = _CONTENT_RANGE.match(response.headers.get("Content-Range") or "")
                if not match or int(match.group(1)) != offset or match.group(3) == "*":
                    raise _Restart
                total: int | None = int(match.group(3))
                if self.entry.get("size") not in (None, total):
                    raise _Restart
                self._rehash(offset)
                self.resumed, mode = True, "ab"
            elif response.status == 200:
                if offset:
                    logger.info(
                        "%s: the server ignored the Range request; downloading from the start", self.url
                    )
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                offset, mode = 0, "wb"
                self.hasher, self.hashed, self.resumed = hashlib.sha256(), 0, False
            else:
                raise DownloadError(f"{self.url}: unexpected HTTP {response.status} {response.reason}")
            self.entry.update(size=total, etag=response.headers.get("ETag"))
            self.save(self.entry)
            _check_space(dest, self.part.name.removesuffix(".part"), (total or 0) - offset, total or 0)
            done, cut = offset, None
            self.report(done, total)
            with open(self.part, mode) as fh:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as err:  # reset, timeout, ...
                        cut = _reason(err)
                        break
                    if not chunk:
                        break
                    fh.write(chunk)
                    self.hasher.update(chunk)
                    done += len(chunk)
                    self.hashed = done
                    self.received += len(chunk)
                    self.report(done, total)
                fh.flush()
                os.fsync(fh.fileno())
        if total is not None and done > total:
            raise _Restart
        if cut is not None or (total is not None and done < total):
            raise _Cut(cut or f"connection closed after {done} of {total} bytes")
        return done


def _check_space(dest: Path, name: str, remaining: int, total: int) -> None:
    """DownloadError when ``dest`` cannot hold the rest of the download and its extraction."""
    need = remaining + total  # images and masks barely compress: the extraction is about as big
    free = shutil.disk_usage(dest).free
    if need > free:
        raise DownloadError(
            f"not enough free disk space in {dest}: about {need / 1e9:.1f} GB needed for {name} "
            f"and its extraction, {free / 1e9:.1f} GB free"
        )


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _fetch(
    url: str,
    dest: Path,
    name: str,
    manifest: _Manifest,
    timeout: float,
    retries: int,
    progress: Callable[[str, int, int | None], None] | None,
) -> tuple[int, str, bool, int]:
    """Download ``url`` into ``dest/name`` via ``name.part``.

    Returns:
        ``(size, sha256, resumed, bytes received)``.
    """
    part = dest / f"{name}.part"
    entry = dict(manifest.archives.get(name, {}))
    if entry.get("status") != "partial" or entry.get("url") != url:
        entry = {"status": "partial", "url": url}  # a .part of unknown origin is still tried
    transfer = _Transfer(
        url,
        part,
        entry,
        timeout,
        save=lambda e: manifest.set(name, e),
        report=lambda done, total: progress(name, done, total) if progress else None,
    )
    attempts = restarts = 0
    while True:
        before = transfer.received
        try:
            size = transfer.attempt(dest)
            break
        except _Restart:
            restarts += 1
            part.unlink(missing_ok=True)
            transfer.entry = entry = {"status": "partial", "url": url}
            if restarts > 1:
                raise DownloadError(
                    f"{url}: the server's answers to a resumed download are inconsistent"
                ) from None
            logger.info("%s: the partial download is stale; starting again", name)
        except _Cut as cut:
            have = part.stat().st_size if part.is_file() else 0
            if attempts >= retries:
                raise DownloadError(
                    f"download of {url} interrupted ({cut}) with {have} bytes saved in {part}; "
                    "run the same command again to resume"
                ) from None
            attempts += 1
            logger.info("%s: interrupted (%s); resuming from byte %d", name, cut, have)
            if transfer.received == before:
                time.sleep(min(2.0**attempts, 30.0))  # back off only when nothing arrived
    os.replace(part, dest / name)
    return size, transfer.hasher.hexdigest(), transfer.resumed, transfer.received


def download_isic2018(
    dest: str | Path,
    parts: Sequence[str] = PARTS,
    *,
    lesion_masks: bool = False,
    base_url: str = ISIC2018_URL,
    progress: Callable[[str, int, int | None], None] | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    keep_archives: bool = True,
    max_extracted_bytes: int = MAX_EXTRACTED_BYTES,
    max_ratio: float = MAX_COMPRESSION_RATIO,
) -> DownloadResult:
    """Download and extract the ISIC 2018 archives of ``parts`` into ``dest`` (official layout).

    Archives already downloaded and extracted (per the manifest, with their folders
    present) are skipped without contacting the server. An interrupted download is
    resumed, within this call up to ``retries`` times, and by the next call after that.

    Args:
        dest: destination folder, created if needed; afterwards ``dermseg check dest`` reads it.
        parts: any of ``train``, ``val``, ``test``.
        lesion_masks: also fetch the Task 1 lesion masks.
        base_url: folder URL the archive names are appended to.
        progress: called as ``(label, bytes done, total bytes or None)``; the label is the archive
            name while it downloads and ``"extracting <name>"`` while it is extracted.
        timeout: seconds to wait for the connection and for each read.
        retries: resumptions tried within this call after a broken connection.
        keep_archives: keep each zip after extraction (else it is deleted; the manifest remembers it).
        max_extracted_bytes: largest size one archive may expand to.
        max_ratio: largest compression ratio accepted for a large entry (zip bomb guard).

    Returns:
        What was downloaded, resumed, extracted and skipped.

    Raises:
        ConfigError: unknown parts.
        DownloadError: host unreachable, HTTP error, transfer interrupted ``retries + 1`` times,
            or not enough disk space; the partial file is kept for the next call.
        ArchiveError: a corrupt or unsafe archive; it is deleted and nothing of it is left in ``dest``.
    """
    names = archive_names(parts, lesion_masks)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise DownloadError("is a file, expected a folder to download into", dest)
    dest.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    manifest = _Manifest(dest)
    result = DownloadResult(dest=dest)
    for name in names:
        url, zip_path = base_url + name, dest / name
        entry = manifest.archives.get(name, {})
        folders = entry.get("folders") or []
        if entry.get("status") == "extracted" and folders and all((dest / f).exists() for f in folders):
            logger.info("%s: already downloaded and extracted", name)
            result.skipped.append(name)
            continue
        have_zip = (
            entry.get("status") in ("downloaded", "extracted")
            and zip_path.is_file()
            and zip_path.stat().st_size == entry.get("size")
            and _sha256(zip_path) == entry.get("sha256")
        )
        if not have_zip:
            size, sha256, resumed, received = _fetch(url, dest, name, manifest, timeout, retries, progress)
            entry = {"status": "downloaded", "url": url, "size": size, "sha256": sha256}
            manifest.set(name, entry)
            result.downloaded.append(name)
            result.resumed.extend([name] if resumed else [])
            result.bytes_received += received
        label = f"extracting {name}"
        try:
            folders = safe_extract(
                zip_path,
                dest,
                max_extracted_bytes=max_extracted_bytes,
                max_ratio=max_ratio,
                reserved={MANIFEST_NAME, *ARCHIVES, *(f"{n}.part" for n in ARCHIVES)},
                progress=lambda done, total, label=label: progress(label, done, total) if progress else None,
            )
        except ArchiveError as err:
            zip_path.unlink(missing_ok=True)  # a rerun downloads it afresh
            manifest.set(name, None)
            if isinstance(err, CorruptArchiveError):
                raise CorruptArchiveError(
                    f"{err.message}; deleted it: run again to download it afresh", err.path
                ) from None
            raise
        manifest.set(name, {**entry, "status": "extracted", "folders": folders})
        result.extracted.append(name)
        if not keep_archives:
            zip_path.unlink(missing_ok=True)
    return result
