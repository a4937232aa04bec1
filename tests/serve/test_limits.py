"""The server's limits (issue 16, findings 1-3): elongated images, admission, origins, slow clients."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from dermseg.inference.segmenter import Segmenter
from dermseg.serve import Admission, BackgroundServer, ConnectionLimits, create_app
from tests.serve.conftest import encode, square_image


def post(client: TestClient, data: bytes, **headers: str):
    return client.post("/api/predict", files={"file": ("x.png", data, "image/png")}, headers=headers)


def test_an_elongated_image_is_refused_with_413(segmenter: Segmenter) -> None:
    client = TestClient(create_app(segmenter))
    response = post(client, encode(np.full((2, 2000, 3), 200, np.uint8)))
    assert response.status_code == 413, response.text
    assert (
        "aspect ratio 1e+03:1" in response.json()["error"]
        and "--max-aspect-ratio" in response.json()["error"]
    )
    assert post(client, encode(square_image(8, width=240, height=40))).status_code == 200  # 6:1 is fine


def test_a_post_from_another_origin_is_refused(segmenter: Segmenter) -> None:
    client = TestClient(create_app(segmenter), base_url="http://127.0.0.1:8000")
    image = encode(square_image(8))
    assert post(client, image, origin="http://evil.example").status_code == 403
    assert post(client, image, origin="null").status_code == 403
    assert post(client, image, origin="http://127.0.0.1:8000").status_code == 200  # the page itself
    assert post(client, image).status_code == 200  # curl, scripts


class _Gate(torch.nn.Module):
    """A stand-in model that waits until it is let through (to hold slots while the test looks)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.release()
        self.release.wait(30)
        return x[:, :1].repeat(1, 5, 1, 1)


def test_beyond_in_flight_and_queue_the_server_answers_503(segmenter: Segmenter) -> None:
    from tests.serve.conftest import META

    gate = _Gate()
    slow = Segmenter.from_model(gate, META)
    admission = Admission(max_in_flight=1, max_queue=1, retry_after=7)
    with BackgroundServer(create_app(slow, admission=admission)) as server:
        results: list[int] = []

        def upload() -> None:
            results.append(_post_status(server.url, encode(square_image(8))))

        first = threading.Thread(target=upload)
        first.start()
        assert gate.entered.acquire(timeout=20)  # one in flight
        second = threading.Thread(target=upload)
        second.start()
        deadline = time.monotonic() + 10
        while admission.admitted < 2 and time.monotonic() < deadline:  # one queued
            time.sleep(0.02)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(_request(server.url, encode(square_image(8))), timeout=10)
        assert refused.value.code == 503 and refused.value.headers["retry-after"] == "7"
        gate.release.set()
        first.join(20), second.join(20)
        assert results == [200, 200] and admission.peak_in_flight == 1


def _request(url: str, image: bytes) -> urllib.request.Request:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    return urllib.request.Request(url + "api/predict", data=body, headers=headers, method="POST")


def _post_status(url: str, image: bytes) -> int:
    try:
        with urllib.request.urlopen(_request(url, image), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _connect(url: str) -> socket.socket:
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (or answers and closes) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_silent_and_slow_header_connections_are_closed(segmenter: Segmenter) -> None:
    limits = ConnectionLimits(header_timeout=0.5)
    with BackgroundServer(create_app(segmenter), limits=limits) as server:
        silent = _connect(server.url)
        trickle = _connect(server.url)
        trickle.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
        assert _closed_within(silent, 5) and _closed_within(trickle, 5)
        # a well-behaved client on a kept-alive connection is unaffected
        with urllib.request.urlopen(server.url + "api/info", timeout=10) as response:
            assert response.status == 200


def test_a_stalled_upload_gets_408(segmenter: Segmenter) -> None:
    with BackgroundServer(create_app(segmenter, body_timeout=0.5)) as server:
        sock = _connect(server.url)
        head = (
            "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
        )
        sock.sendall(head.encode())
        sock.settimeout(10)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer


def test_uploads_still_arriving_hold_no_admission_place(segmenter: Segmenter) -> None:
    admission = Admission(max_in_flight=1, max_queue=0)
    with BackgroundServer(create_app(segmenter, admission=admission)) as server:
        trickling = [_connect(server.url) for _ in range(3)]  # bodies that never finish
        for sock in trickling:
            sock.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
            )
        time.sleep(0.3)  # all three requests are in the handler, waiting for their bodies
        assert admission.admitted == 0
        assert _post_status(server.url, encode(square_image(8))) == 200  # not 503
        for sock in trickling:
            sock.close()


def test_sigterm_stops_within_the_grace_period_despite_a_stalled_upload(segmenter: Segmenter) -> None:
    limits = ConnectionLimits(shutdown_grace=1)
    server = BackgroundServer(create_app(segmenter, body_timeout=None), limits=limits)
    server.__enter__()
    sock = _connect(server.url)
    sock.sendall(
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
    )
    time.sleep(0.3)  # the request is in flight, waiting for its body
    start = time.monotonic()
    server._server.should_exit = True  # what uvicorn's SIGTERM handler does
    server._thread.join(15)
    assert not server._thread.is_alive() and time.monotonic() - start < 5
    sock.close()
    server._sock.close()
