"""``download_isic2018`` against a local HTTP server on 127.0.0.1 (the command: tests/cli)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import stat
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from dermseg.data.archive import CorruptArchiveError, UnsafeArchiveError, safe_extract
from dermseg.data.check import check_dataset
from dermseg.data.download import (
    ARCHIVES,
    MANIFEST_NAME,
    DownloadError,
    archive_names,
    download_isic2018,
)
from dermseg.data.layout import discover
from dermseg.errors import ConfigError
from tests.archive_server import (
    VAL_GT,
    VAL_INPUT,
    ArchiveServer,
    clear_proxies,
    free_port,
    official_zips,
    serving,
)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxies(monkeypatch)


@pytest.fixture
def server() -> Iterator[ArchiveServer]:
    with serving() as srv:
        yield srv


@pytest.fixture
def official(server: ArchiveServer, tmp_path: Path) -> ArchiveServer:
    server.files.update(official_zips(tmp_path))
    return server


def _dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


# --- the plan -------------------------------------------------------------------------------------


def test_archive_names_and_sizes() -> None:
    assert archive_names(["val"]) == [VAL_INPUT, VAL_GT]
    assert archive_names("test,train") == [
        "ISIC2018_Task1-2_Training_Input.zip",
        "ISIC2018_Task2_Training_GroundTruth_v3.zip",
        "ISIC2018_Task1-2_Test_Input.zip",
        "ISIC2018_Task2_Test_GroundTruth.zip",
    ]
    full = archive_names(lesion_masks=True)
    assert len(full) == 9 and "ISIC2018_Task1_Validation_GroundTruth.zip" in full
    assert all(ARCHIVES[n].approx_bytes > 0 for n in full)
    assert ARCHIVES["ISIC2018_Task1-2_Training_Input.zip"].approx_bytes > 10e9
    with pytest.raises(ConfigError, match="'training'"):
        archive_names(["training"])


# --- downloading ----------------------------------------------------------------------------------


def test_download_extracts_official_layout_then_skips(official: ArchiveServer, tmp_path: Path) -> None:
    dest = tmp_path / "isic"
    seen: list[tuple[str, int, int | None]] = []
    result = download_isic2018(dest, base_url=official.url, progress=lambda *a: seen.append(a))
    assert result.downloaded == archive_names() and not result.skipped and not result.resumed
    assert result.bytes_received == sum(len(b) for b in official.files.values())
    layout = discover(dest)
    assert layout.kind == "official"
    assert {k: s.ids for k, s in layout.splits.items()} == {
        "training": ["ISIC_0000000", "ISIC_0000001"],
        "validation": ["ISIC_0000010", "ISIC_0000011"],
        "test": ["ISIC_0000020", "ISIC_0000021"],
    }
    assert all(s.has_masks for s in layout.samples)
    assert check_dataset(dest, workers=1).problems == []  # what `dermseg check DEST` runs
    manifest = json.loads((dest / MANIFEST_NAME).read_text())["archives"]
    assert manifest[VAL_INPUT]["sha256"] == hashlib.sha256(official.files[VAL_INPUT]).hexdigest()
    assert manifest[VAL_INPUT]["folders"] == ["ISIC2018_Task1-2_Validation_Input"]
    assert (dest / VAL_INPUT).read_bytes() == official.files[VAL_INPUT]
    assert (VAL_INPUT, len(official.files[VAL_INPUT]), len(official.files[VAL_INPUT])) in seen
    assert any(label == f"extracting {VAL_INPUT}" for label, _, _ in seen)
    assert not list(dest.glob("*.part")) and not list(dest.glob(".extract-*"))

    official.requests.clear()
    again = download_isic2018(dest, base_url=official.url)
    assert official.requests == []  # nothing asked of the server
    assert again.skipped == archive_names() and again.downloaded == []


def test_deleted_folder_is_extracted_again_without_download(official: ArchiveServer, tmp_path: Path) -> None:
    dest = tmp_path / "isic"
    download_isic2018(dest, ["val"], base_url=official.url)
    shutil.rmtree(dest / "ISIC2018_Task1-2_Validation_Input")
    official.requests.clear()
    result = download_isic2018(dest, ["val"], base_url=official.url)
    assert official.requests == [] and result.extracted == [VAL_INPUT] and result.skipped == [VAL_GT]
    assert discover(dest).splits["validation"].ids == ["ISIC_0000010", "ISIC_0000011"]


def test_resume_after_connection_cut_on_next_call(official: ArchiveServer, tmp_path: Path) -> None:
    dest = tmp_path / "isic"
    official.cut[VAL_INPUT] = 1000
    with pytest.raises(DownloadError, match="interrupted") as err:
        download_isic2018(dest, ["val"], base_url=official.url, retries=0)
    assert "\n" not in str(err.value) and "again to resume" in str(err.value)
    assert (dest / f"{VAL_INPUT}.part").stat().st_size == 1000
    assert not (dest / "ISIC2018_Task1-2_Validation_Input").exists()

    official.requests.clear()
    result = download_isic2018(dest, ["val"], base_url=official.url, retries=0)
    name, headers = official.requests[0]
    assert name == VAL_INPUT and headers["Range"] == "bytes=1000-" and headers["If-Range"] == '"v1"'
    assert result.resumed == [VAL_INPUT]
    assert result.bytes_received == len(official.files[VAL_INPUT]) - 1000 + len(official.files[VAL_GT])
    assert (dest / VAL_INPUT).read_bytes() == official.files[VAL_INPUT]
    assert discover(dest).splits["validation"].ids == ["ISIC_0000010", "ISIC_0000011"]


def test_resume_within_one_call(official: ArchiveServer, tmp_path: Path) -> None:
    dest = tmp_path / "isic"
    official.cut[VAL_INPUT] = 700
    result = download_isic2018(dest, ["val"], base_url=official.url)
    ranges = [h.get("Range") for n, h in official.requests if n == VAL_INPUT]
    assert ranges == [None, "bytes=700-"]
    assert result.resumed == [VAL_INPUT]
    assert (dest / VAL_INPUT).read_bytes() == official.files[VAL_INPUT]


def test_server_ignoring_range_gives_full_download(official: ArchiveServer, tmp_path: Path) -> None:
    dest = tmp_path / "isic"
    official.ignore_range = True
    official.cut[VAL_INPUT] = 500
    result = download_isic2018(dest, ["val"], base_url=official.url)
    ranges = [h.get("Range") for n, h in official.requests if n == VAL_INPUT]
    assert ranges == [None, "bytes=500-"]  # asked, answered 200 with the whole file
    assert result.resumed == []
    assert (dest / VAL_INPUT).read_bytes() == official.files[VAL_INPUT]
    assert discover(dest).splits["validation"].ids == ["ISIC_0000010", "ISIC_0000011"]


def test_complete_part_file_is_accepted(official: ArchiveServer, tmp_path: Path) -> None:
    dest = tmp_path / "isic"
    dest.mkdir()
    (dest / f"{VAL_INPUT}.part").write_bytes(official.files[VAL_INPUT])  # killed before the rename
    result = download_isic2018(dest, ["val"], base_url=official.url)
    assert result.resumed == [VAL_INPUT]  # the server answered 416 with the same total
    assert (dest / VAL_INPUT).read_bytes() == official.files[VAL_INPUT]


def test_stale_part_file_is_replaced(official: ArchiveServer, tmp_path: Path) -> None:
    dest = tmp_path / "isic"
    dest.mkdir()
    (dest / f"{VAL_INPUT}.part").write_bytes(b"x" * (len(official.files[VAL_INPUT]) + 10))
    download_isic2018(dest, ["val"], base_url=official.url)
    assert (dest / VAL_INPUT).read_bytes() == official.files[VAL_INPUT]


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_is_one_line(official: ArchiveServer, tmp_path: Path, status: int) -> None:
    official.fail[VAL_INPUT] = status
    with pytest.raises(DownloadError) as err:
        download_isic2018(tmp_path / "isic", ["val"], base_url=official.url)
    msg = str(err.value)
    assert f"HTTP {status}" in msg and official.url + VAL_INPUT in msg and "\n" not in msg
    assert not (tmp_path / "isic" / VAL_INPUT).exists()


def test_unreachable_host_fails_fast(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/2018/"
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        download_isic2018(tmp_path / "isic", ["val"], base_url=url, timeout=5)
    assert time.monotonic() - start < 3
    msg = str(err.value)
    assert msg.startswith(f"cannot reach {url}{VAL_INPUT}") and "could not be downloaded" in msg
    assert str(tmp_path / "isic") in msg and "official layout" in msg and "\n" not in msg


def test_not_enough_disk_space(
    official: ArchiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: SimpleNamespace(total=10, used=10, free=0))
    with pytest.raises(DownloadError, match="not enough free disk space"):
        download_isic2018(tmp_path / "isic", ["val"], base_url=official.url)


# --- integrity and safe extraction ----------------------------------------------------------------


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def _symlink(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


GOOD = ("ISIC2018_Task1-2_Validation_Input/ISIC_0000010.jpg", b"\xff\xd8 not really a jpeg")


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (("../evil.txt", b"x"), "'..' component"),
        (("ISIC2018_Task1-2_Validation_Input/../../evil.txt", b"x"), "'..' component"),
        (("/tmp/dermseg-evil-absolute.txt", b"x"), "absolute path"),
        (("C:\\evil.txt", b"x"), "absolute path"),
        (
            (_symlink("ISIC2018_Task1-2_Validation_Input/link", "/etc/passwd"), b"/etc/passwd"),
            "symbolic link",
        ),
        (("ISIC2018_Task1-2_Validation_Input/bomb.jpg", bytes(4 * 1024 * 1024)), "zip bomb"),
        ((MANIFEST_NAME, b"{}"), "would replace"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "drive", "symlink", "ratio-bomb", "manifest"],
)
def test_malicious_archive_is_rejected(
    server: ArchiveServer, tmp_path: Path, entry: tuple[zipfile.ZipInfo | str, bytes], why: str
) -> None:
    dest = tmp_path / "isic"
    server.files[VAL_INPUT] = _zip([GOOD, entry])
    with pytest.raises(UnsafeArchiveError, match=re.escape(why)) as err:
        download_isic2018(dest, ["val"], base_url=server.url)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/dermseg-evil-absolute.txt").exists()
    assert _dirs(dest) == []  # no half folder, no temporary folder
    assert not (dest / VAL_INPUT).exists()  # the bad archive is deleted
    assert VAL_INPUT not in json.loads((dest / MANIFEST_NAME).read_text())["archives"]


def test_zip_bomb_over_total_limit(server: ArchiveServer, tmp_path: Path) -> None:
    dest = tmp_path / "isic"
    server.files[VAL_INPUT] = _zip([GOOD, ("ISIC2018_Task1-2_Validation_Input/big.txt", b"ab" * 200_000)])
    with pytest.raises(UnsafeArchiveError, match="more than the limit of 100000"):
        download_isic2018(dest, ["val"], base_url=server.url, max_extracted_bytes=100_000)
    assert _dirs(dest) == []


def test_entry_larger_than_declared_is_stopped(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip([("top/a.txt", b"a" * 5000)]))
    raw = bytearray(archive.read_bytes())
    # lower the declared size in the central directory: the data now holds more than it declares
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 24 : central + 28] = (100).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    with pytest.raises((UnsafeArchiveError, CorruptArchiveError)):
        safe_extract(archive, tmp_path / "out")
    assert _dirs(tmp_path / "out") == []


def test_garbage_with_right_length_is_an_integrity_error(server: ArchiveServer, tmp_path: Path) -> None:
    dest = tmp_path / "isic"
    server.files[VAL_INPUT] = b"\x00garbage" * 300
    with pytest.raises(CorruptArchiveError, match="not a valid zip") as err:
        download_isic2018(dest, ["val"], base_url=server.url)
    assert "run again" in str(err.value) and "\n" not in str(err.value)
    assert not (dest / VAL_INPUT).exists() and not (dest / f"{VAL_INPUT}.part").exists()
    assert _dirs(dest) == []


def test_crc_error_mid_extraction_leaves_no_half_folder(server: ArchiveServer, tmp_path: Path) -> None:
    dest = tmp_path / "isic"
    first = ("ISIC2018_Task1-2_Validation_Input/ISIC_0000010.jpg", b"A" * 3000)
    second = ("ISIC2018_Task1-2_Validation_Input/ISIC_0000011.jpg", bytes(range(256)) * 20)
    data = bytearray(_zip([first, second]))
    # flip one byte of the second entry's data (stored after its local header and name)
    offset = data.index(second[0].encode()) + len(second[0]) + 10
    data[offset] ^= 0xFF
    server.files[VAL_INPUT] = bytes(data)
    with pytest.raises(CorruptArchiveError):
        download_isic2018(dest, ["val"], base_url=server.url)
    assert _dirs(dest) == [] and not (dest / VAL_INPUT).exists()


def test_safe_extract_replaces_existing_folder(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip([("top/new.txt", b"new")]))
    (tmp_path / "out" / "top").mkdir(parents=True)
    (tmp_path / "out" / "top" / "old.txt").write_text("old")
    assert safe_extract(archive, tmp_path / "out") == ["top"]
    assert [p.name for p in (tmp_path / "out" / "top").iterdir()] == ["new.txt"]
    assert _dirs(tmp_path / "out") == ["top"]
