"""A bounded load test over a real socket: 100 requests from 8 clients, valid and invalid mixed.

Asserted: every valid request answers 200 with its own result (no mixing), every invalid one
its code (400 broken, 413 elongated, 415 not an image, 403 foreign origin; 503 only when the
server is full, then retried), and the server's RSS after the run within 150 MB of before
(the results kept in memory are 32 small images at most).
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from dermseg.inference.segmenter import Segmenter
from dermseg.serve import BackgroundServer, create_app
from tests.serve.conftest import encode, square_image
from tests.serve.test_limits import _request

REQUESTS, CLIENTS = 100, 8
RSS_BOUND = 150 * 2**20


def _rss() -> int:
    """This process's resident memory, bytes (Linux: /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status")


def _send(url: str, image: bytes, origin: str | None) -> tuple[int, dict]:
    request = _request(url, image)
    if origin is not None:
        request.add_header("Origin", origin)
    for _ in range(50):
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            if err.code != 503:
                return err.code, {}
            time.sleep(float(err.headers["retry-after"]) / 10)  # busy: retry (sooner, in a test)
    return 503, {}


def test_mixed_load_never_fails_or_mixes(segmenter: Segmenter) -> None:
    rng = random.Random(0)
    sides = [8, 16, 24, 32, 40, 48]
    images = {side: encode(square_image(side, at=(side // 2, 10))) for side in sides}
    expected = {
        side: round(float(segmenter(square_image(side, at=(side // 2, 10))).masks[0].mean() * 100), 6)
        for side in sides
    }
    invalid = {
        "broken": (b"\x89PNG\r\n\x1a\n broken", None, 400),
        "elongated": (encode(np.full((2, 1000, 3), 200, np.uint8)), None, 413),
        "text": (b"hello, not an image", None, 415),
        "foreign": (images[8], "http://evil.example", 403),
    }
    plan = []
    for _ in range(REQUESTS):
        if rng.random() < 0.3:
            name = rng.choice(sorted(invalid))
            data, origin, code = invalid[name]
            plan.append((data, origin, code, None))
        else:
            side = rng.choice(sides)
            plan.append((images[side], None, 200, side))
    with BackgroundServer(create_app(segmenter)) as server:
        for side in sides:  # warm up: first calls allocate the model's buffers
            assert _send(server.url, images[side], None)[0] == 200
        before = _rss()
        start = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(lambda p: _send(server.url, p[0], p[1]), plan))
        elapsed = time.monotonic() - start
        after = _rss()
    for (_, _, code, side), (status, body) in zip(plan, answers, strict=True):
        assert status == code, (side, status)
        if side is not None:  # its own result: globules' area is the bright square's
            assert round(body["attributes"][0]["area_percent"], 6) == pytest.approx(expected[side]), side
    assert elapsed < 60
    assert after - before < RSS_BOUND, f"RSS grew by {(after - before) / 2**20:.0f} MB"
