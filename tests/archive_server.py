"""A local HTTP server that hands out ISIC-like archives, for the download tests.

It answers on 127.0.0.1 only, and can misbehave on purpose: cut a connection after so many bytes
(``cut``), ignore ``Range`` requests (``ignore_range``) or answer an HTTP error (``fail``).
"""

from __future__ import annotations

import io
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import write_sample

VAL_INPUT = "ISIC2018_Task1-2_Validation_Input.zip"
VAL_GT = "ISIC2018_Task2_Validation_GroundTruth.zip"


class ArchiveServer(ThreadingHTTPServer):
    """Serves ``files`` (archive name -> bytes) under ``url``, recording every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.cut: dict[str, int] = {}  # archive -> bytes sent before the connection is cut (once)
        self.ignore_range = False
        self.fail: dict[str, int] = {}  # archive -> HTTP error status to answer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/2018/"


class _Handler(BaseHTTPRequestHandler):
    server: ArchiveServer

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        name = self.path.removeprefix("/2018/")
        self.server.requests.append((name, dict(self.headers)))
        data = self.server.files.get(name)
        if name in self.server.fail:
            self.send_error(self.server.fail[name])
            return
        if data is None:
            self.send_error(404, "Not Found")
            return
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and not self.server.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("ETag", '"v1"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        body = data[start:]
        cut = self.server.cut.pop(name, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)


def clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the proxy variables: a request to 127.0.0.1 must not go through a proxy."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@contextmanager
def serving() -> Iterator[ArchiveServer]:
    """An :class:`ArchiveServer` answering in a background thread until the block ends."""
    srv = ArchiveServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def zip_folder(root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


def official_zips(tmp_path: Path) -> dict[str, bytes]:
    """The six Task 2 archives, two images each, built like the official ones (one top-level folder)."""
    zips = {}
    for k, (split, gt) in enumerate(
        [
            ("Training", "Training_GroundTruth_v3"),
            ("Validation", "Validation_GroundTruth"),
            ("Test", "Test_GroundTruth"),
        ]
    ):
        src = tmp_path / "src" / split
        image_dir = src / "in" / f"ISIC2018_Task1-2_{split}_Input"
        mask_dir = src / "gt" / f"ISIC2018_Task2_{gt}"
        for i in range(2):
            write_sample(image_dir, f"ISIC_{10 * k + i:07d}", mask_dir=mask_dir, seed=i)
        (image_dir / "LICENSE.txt").write_text("CC-BY-NC\n")
        zips[f"ISIC2018_Task1-2_{split}_Input.zip"] = zip_folder(src / "in")
        zips[f"ISIC2018_Task2_{gt}.zip"] = zip_folder(src / "gt")
    return zips


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
