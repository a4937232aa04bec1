"""``dermseg download isic2018`` against a local HTTP server on 127.0.0.1: what it prints and
its exit codes (the download itself: tests/data/test_download.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dermseg.cli import main
from dermseg.data.layout import discover
from tests.archive_server import VAL_INPUT, ArchiveServer, clear_proxies, free_port, official_zips, serving


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


def test_cli_download_val(
    official: ArchiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "isic"
    code = main(["download", "isic2018", "--dest", str(dest), "--base-url", official.url, "--parts", "val"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{VAL_INPUT}: downloaded and extracted" in out and "2 archive(s) downloaded" in out
    assert discover(dest).splits["validation"].ids == ["ISIC_0000010", "ISIC_0000011"]
    assert main(["check", str(dest)]) == 0
    code = main(["download", "isic2018", "--dest", str(dest), "--base-url", official.url, "--parts", "val"])
    assert code == 0 and "2 already present" in capsys.readouterr().out


def test_cli_plan_downloads_nothing(
    server: ArchiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["download", "isic2018", "--dest", str(tmp_path / "d"), "--base-url", server.url, "--plan"])
    out = capsys.readouterr().out
    assert code == 0 and "ISIC2018_Task1-2_Training_Input.zip" in out and "approximate" in out
    assert server.requests == [] and not (tmp_path / "d").exists()


def test_cli_unreachable_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/2018/"
    code = main(["download", "isic2018", "--dest", str(tmp_path / "d"), "--base-url", url, "--parts", "val"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("dermseg: error: cannot reach") and err.count("\n") == 1
    assert "Traceback" not in err


def test_cli_unknown_part(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["download", "isic2018", "--dest", str(tmp_path / "d"), "--parts", "val,bogus"])
    err = capsys.readouterr().err
    assert code == 2 and "'bogus'" in err and err.count("\n") == 1
