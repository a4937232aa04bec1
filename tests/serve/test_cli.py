"""``dermseg serve``: loads the checkpoint, binds 127.0.0.1 by default, warns elsewhere."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import dermseg.serve
from dermseg.cli import main
from tests.conftest import write_tiny_checkpoint
from tests.serve.conftest import encode, square_image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model saved as a dermseg checkpoint."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Catch what `dermseg serve` would serve instead of serving it."""
    seen: dict = {}

    def fake_serve_forever(app, sock: socket.socket, log_level: str = "warning", limits=None) -> None:
        seen.update(app=app, address=sock.getsockname(), limits=limits)

    monkeypatch.setattr(dermseg.serve, "serve_forever", fake_serve_forever)
    return seen


def test_serve_loads_the_checkpoint_and_binds_loopback(
    checkpoint: Path, served: dict, capsys: pytest.CaptureFixture
) -> None:
    assert main(["serve", "--checkpoint", str(checkpoint), "--port", "0", "--max-upload-mb", "0.5"]) == 0
    host, port = served["address"][:2]
    out, err = capsys.readouterr()
    assert host == "127.0.0.1" and f"http://127.0.0.1:{port}/" in out and "warning" not in err
    client = TestClient(served["app"], base_url=f"http://127.0.0.1:{port}")
    info = client.get("/api/info").json()
    fields = dict(info["model"]["fields"])
    assert fields["Model file"] == "tiny.safetensors" and fields["Encoder"] == "resnet18"
    assert info["max_upload_bytes"] == 500_000
    response = client.post("/api/predict", files={"file": ("ISIC_0000001.png", encode(square_image(20)))})
    assert response.status_code == 200 and response.json()["stem"] == "ISIC_0000001"
    # the app only answers to this machine's names (DNS-rebinding guard)
    assert TestClient(served["app"], base_url="http://evil.example").get("/").status_code == 400


def test_serve_warns_when_reachable_from_the_network(
    checkpoint: Path, served: dict, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bind loopback all the same: the test only checks what the command says about other hosts.
    real_listen = dermseg.serve.listen
    monkeypatch.setattr(dermseg.serve, "listen", lambda host, port: real_listen("127.0.0.1", 0))
    assert main(["serve", "--checkpoint", str(checkpoint), "--host", "0.0.0.0"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "other computers" in err


def test_serve_reports_bad_checkpoint_and_busy_port(
    checkpoint: Path, tmp_path: Path, served: dict, capsys: pytest.CaptureFixture
) -> None:
    assert main(["serve", "--checkpoint", str(tmp_path / "missing.safetensors")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--checkpoint", str(checkpoint), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert "app" not in served


def test_serve_with_tiles(checkpoint: Path, served: dict, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(["serve", "--checkpoint", str(checkpoint), "--port", "0", "--tiles", "--tile-batch", "2"]) == 0
    )
    assert "prediction: tiles: 96 px, overlap 0.5, 2 per batch" in capsys.readouterr().out
    host, port = served["address"][:2]
    client = TestClient(served["app"], base_url=f"http://{host}:{port}")
    response = client.post("/api/predict", files={"file": ("ISIC_0000001.png", encode(square_image(200)))})
    assert response.status_code == 200
