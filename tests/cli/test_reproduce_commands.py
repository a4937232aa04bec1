"""``dermseg reproduce isic2018`` (cli/reproduce_commands.py): bad arguments are one line and exit
code 2 (the pipeline itself: tests/reproduce)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dermseg.cli import main


def test_unreachable_archive_host_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["reproduce", "isic2018", "--out", str(tmp_path / "r"), "--base-url", f"http://127.0.0.1:{port}/"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "Traceback" not in err[0]


def test_data_that_is_a_file_or_an_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a_file = tmp_path / "data.txt"
    a_file.write_text("not a folder")
    assert main(["reproduce", "isic2018", "--out", str(tmp_path / "r"), "--data", str(a_file), "--plan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(a_file) in err[0] and "is a file" in err[0]
    assert not (tmp_path / "r").exists()
    # an empty folder is where the archives go: the plan says so instead of failing
    (tmp_path / "empty").mkdir()
    assert (
        main(
            [
                "reproduce",
                "isic2018",
                "--out",
                str(tmp_path / "r"),
                "--data",
                str(tmp_path / "empty"),
                "--plan",
            ]
        )
        == 0
    )
    assert "download  [to do]" in capsys.readouterr().out
