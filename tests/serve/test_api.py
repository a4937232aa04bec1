"""The web app's HTTP API, in process (Starlette's TestClient) and over a real socket (uvicorn)."""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
import threading
import urllib.request
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from dermseg.attributes import ATTRIBUTES, COLOURS
from dermseg.inference.segmenter import Segmenter
from dermseg.serve import BackgroundServer, create_app, describe_model, is_loopback
from dermseg.serve.upload import result_stem, sniff_format
from tests.serve.conftest import encode, square_image

CAP = 200_000


@pytest.fixture
def client(segmenter: Segmenter) -> TestClient:
    return TestClient(create_app(segmenter, max_upload_bytes=CAP, meta={"arch": "stand-in"}))


def post(client: TestClient, name: str, data: bytes, content_type: str = "application/octet-stream"):
    return client.post("/api/predict", files={"file": (name, data, content_type)})


def part_head(boundary: str, filename: str) -> bytes:
    """The opening of a multipart body up to the first byte of the file."""
    disposition = f'Content-Disposition: form-data; name="file"; filename="{filename}"'
    return f"--{boundary}\r\n{disposition}\r\nContent-Type: image/png\r\n\r\n".encode()


def test_page_info_and_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "dermseg" in page.text and 'id="file"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    info = client.get("/api/info").json()
    assert [a["name"] for a in info["attributes"]] == list(ATTRIBUTES)
    assert [tuple(a["colour"]) for a in info["attributes"]] == [COLOURS[a] for a in ATTRIBUTES]
    assert info["max_upload_bytes"] == CAP and info["max_upload"] == "0.2 MB"
    assert "not a medical device" in info["notice"].lower()
    assert info["model"]["thresholds"] == dict.fromkeys(ATTRIBUTES, 0.5)
    assert ["Architecture", "stand-in"] in info["model"]["fields"]


def test_predict_returns_presence_area_and_masks(client: TestClient, segmenter: Segmenter) -> None:
    image = square_image(40)  # 1600 of 19200 pixels bright
    response = post(client, "ISIC_0012345.png", encode(image), "image/png")
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["width"], result["height"], result["stem"]) == (160, 120, "ISIC_0012345")
    by_name = {a["name"]: a for a in result["attributes"]}
    assert list(by_name) == list(ATTRIBUTES)
    expected = segmenter(image)
    for k, name in enumerate(ATTRIBUTES):
        assert by_name[name]["presence"] == pytest.approx(float(expected.presence[k]), abs=1e-4)
        assert by_name[name]["area_percent"] == pytest.approx(expected.masks[k].mean() * 100)
        assert by_name[name]["detected"] is bool(expected.masks[k].any())
    assert by_name["globules"]["area_percent"] == pytest.approx(1600 / 19200 * 100, abs=1.0)
    assert by_name["globules"]["presence"] > 0.99
    mask = client.get(by_name["streaks"]["mask_url"])
    assert mask.status_code == 200 and mask.headers["content-type"] == "image/png"
    decoded = np.asarray(Image.open(io.BytesIO(mask.content)))
    assert decoded.shape == (120, 160) and set(np.unique(decoded)) <= {0, 255}
    assert np.array_equal(decoded > 128, expected.masks[4])
    shown = Image.open(io.BytesIO(client.get(result["image_url"]).content))
    assert shown.format == "JPEG" and shown.size == (160, 120)


def test_zip_holds_the_five_submission_masks_at_the_image_size(
    client: TestClient, segmenter: Segmenter
) -> None:
    image = square_image(30, width=90, height=70, at=(5, 10))
    result = post(client, "ISIC_0000042_downsampled.jpg", encode(image, "JPEG")).json()
    archive = client.get(result["zip_url"])
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    assert 'filename="ISIC_0000042_masks.zip"' in archive.headers["content-disposition"]
    expected = segmenter(Image.open(io.BytesIO(encode(image, "JPEG"))))
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        assert zf.namelist() == [f"ISIC_0000042_attribute_{a}.png" for a in ATTRIBUTES]
        for k, name in enumerate(zf.namelist()):
            img = Image.open(io.BytesIO(zf.read(name)))
            assert img.mode == "L" and img.size == (90, 70)
            assert np.array_equal(np.asarray(img) > 128, expected.masks[k])


@pytest.mark.parametrize(
    ("filename", "stem"),
    [
        ("ISIC_0012345.jpg", "ISIC_0012345"),
        ("scan of ISIC_0012345 (2).JPG", "ISIC_0012345"),
        ("my lesion (2).png", "my_lesion_2"),
        ("../../etc/passwd.png", "passwd"),
        ("..\\windows\\evil.tif", "evil"),
        (".png", "png"),
        ("", "image"),
        ("ünïcødé.jpg", "n_c_d"),
    ],
)
def test_result_names_never_carry_a_path(filename: str, stem: str) -> None:
    assert result_stem(filename) == stem


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WebP"),
        (b"II*\x00\x08\x00", "TIFF"),
        (b"BM6\x00", "BMP"),
        (b"GIF89a", None),
        (b"hello, world", None),
        (b"%PDF-1.7", None),
    ],
)
def test_sniff_format(head: bytes, fmt: str | None) -> None:
    assert sniff_format(head) == fmt


def test_too_large_upload_is_413(client: TestClient) -> None:
    big = encode(square_image(10)) + b"\0" * CAP
    response = post(client, "ISIC_0000001.png", big, "image/png")
    assert response.status_code == 413
    assert response.json()["error"] == "The file is larger than the upload limit of 0.2 MB."


def test_pixel_bomb_is_413(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dermseg.data.imageio.MAX_IMAGE_PIXELS", 1000)
    response = post(client, "big.png", encode(square_image(10)), "image/png")
    assert response.status_code == 413 and "image too large" in response.json()["error"]


def test_non_image_is_415(client: TestClient) -> None:
    response = post(client, "notes.txt", b"these are my notes, not a picture", "text/plain")
    assert response.status_code == 415
    assert response.json()["error"] == (
        "notes.txt is not an image dermseg reads; expected JPEG, PNG, TIFF, BMP or WebP."
    )
    # the claimed type does not matter: the first bytes decide
    assert post(client, "fake.jpg", b"%PDF-1.7 ...", "image/jpeg").status_code == 415


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"file": ("ISIC_0000001.jpg", b"\xff\xd8\xff\xe0 truncated jpeg", "image/jpeg")},
            "could not be read",
        ),
        ({"file": ("empty.png", b"", "image/png")}, "empty"),
        ({"image": ("a.png", encode(square_image(4)), "image/png")}, "No file in the upload"),
    ],
)
def test_broken_uploads_are_400(client: TestClient, files: dict, message: str) -> None:
    response = client.post("/api/predict", files=files)
    assert response.status_code == 400 and message in response.json()["error"]


def test_body_that_is_not_multipart_is_400(client: TestClient) -> None:
    response = client.post(
        "/api/predict", content=encode(square_image(4)), headers={"content-type": "image/png"}
    )
    assert response.status_code == 400 and "multipart/form-data" in response.json()["error"]


def test_unknown_result_is_404(client: TestClient) -> None:
    response = client.get("/api/results/nope/masks.zip")
    assert response.status_code == 404 and "upload the image again" in response.json()["error"]
    result = post(client, "a.png", encode(square_image(8))).json()
    assert client.get(f"/api/results/{result['id']}/masks/nevus.png").status_code == 404


def _asgi_post(app, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, dict, int]:
    """POST /api/predict straight through ASGI; returns status, JSON body and chunks read."""
    total, read = len(chunks), 0
    messages: list[dict] = []

    async def receive() -> dict:
        nonlocal read
        if read < total:
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": read < total}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/predict",
        "raw_path": b"/api/predict",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return messages[0]["status"], json.loads(body), read


def test_cap_is_enforced_while_streaming_without_content_length(segmenter: Segmenter) -> None:
    app = create_app(segmenter, max_upload_bytes=CAP)
    boundary = uuid.uuid4().hex
    head = part_head(boundary, "big.png")
    chunk = 64 * 1024
    chunks = [head + encode(square_image(10))] + [b"\0" * chunk] * 100  # a 6.5 MB body, no length
    headers = [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())]
    status, body, read = _asgi_post(app, chunks, headers)
    assert status == 413 and "upload limit" in body["error"]
    assert read <= CAP // chunk + 2  # it stopped reading at the cap, not at the end of the body


def test_declared_length_over_the_cap_is_refused_before_reading(segmenter: Segmenter) -> None:
    app = create_app(segmenter, max_upload_bytes=CAP)
    headers = [
        (b"content-type", b"multipart/form-data; boundary=x"),
        (b"content-length", str(10 * CAP).encode()),
    ]
    status, body, read = _asgi_post(app, [b"--x\r\n"] * 10, headers)
    assert (status, read) == (413, 0) and "upload limit" in body["error"]


def test_uploads_only_touch_a_temporary_folder(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(tmp_path)
    seen: list[list[Path]] = []

    import dermseg.serve.app as serve_app

    real_size = serve_app.image_size  # the first read of the upload (its header)

    def spy(path: Path) -> tuple[int, int]:
        seen.append(sorted(scratch.rglob("*")))
        return real_size(path)

    monkeypatch.setattr(serve_app, "image_size", spy)
    assert post(client, "../escape.png", encode(square_image(12))).status_code == 200
    assert post(client, "bad.png", b"\x89PNG\r\n\x1a\n broken").status_code == 400
    # while it is analysed the upload sits in a private folder under the temporary root ...
    assert len(seen) == 2 and all(len(s) == 2 and s[0].name.startswith("dermseg-serve-") for s in seen)
    # ... and afterwards nothing is left there, nor anywhere else
    assert list(scratch.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]


def test_concurrent_requests_get_their_own_results(segmenter: Segmenter) -> None:
    sides = [8, 16, 24, 32, 40, 48, 56, 64]
    app = create_app(segmenter, max_upload_bytes=CAP)
    images = {side: square_image(side, at=(side // 2, 10)) for side in sides}
    expected = {side: segmenter(img).masks.reshape(5, -1).mean(1) * 100 for side, img in images.items()}
    start = threading.Barrier(len(sides))

    def upload(url: str, side: int) -> tuple[int, dict, bytes]:
        boundary = uuid.uuid4().hex
        body = part_head(boundary, f"ISIC_{side:07d}.png") + encode(images[side])
        body += f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            url + "api/predict",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        start.wait()
        with urllib.request.urlopen(request, timeout=60) as response:
            result = json.loads(response.read())
        with urllib.request.urlopen(url + result["zip_url"].lstrip("/"), timeout=60) as response:
            return side, result, response.read()

    with BackgroundServer(app) as server, ThreadPoolExecutor(len(sides)) as pool:
        answers = list(pool.map(lambda s: upload(server.url, s), sides))
    assert len({result["id"] for _, result, _ in answers}) == len(sides)
    for side, result, archive in answers:
        assert result["stem"] == f"ISIC_{side:07d}"
        areas = [a["area_percent"] for a in result["attributes"]]
        np.testing.assert_allclose(areas, expected[side], rtol=1e-6)
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            assert zf.namelist()[0] == f"ISIC_{side:07d}_attribute_globules.png"
            globules = np.asarray(Image.open(io.BytesIO(zf.read(zf.namelist()[0])))) > 128
        assert globules.mean() * 100 == pytest.approx(expected[side][0])


def test_host_header_guard(segmenter: Segmenter) -> None:
    app = create_app(segmenter, allowed_hosts=["127.0.0.1", "localhost"])
    assert TestClient(app, base_url="http://127.0.0.1:8000").get("/api/info").status_code == 200
    assert TestClient(app, base_url="http://attacker.example").get("/api/info").status_code == 400


@pytest.mark.parametrize(
    ("host", "local"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True), ("0.0.0.0", False)]
    + [("192.168.1.10", False), ("::", False), ("example.org", False)],
)
def test_is_loopback(host: str, local: bool) -> None:
    assert is_loopback(host) is local


def test_describe_model_reads_the_checkpoint_description(segmenter: Segmenter) -> None:
    meta = {
        "arch": "unet_aspp",
        "model_kwargs": {"encoder_name": "tf_efficientnet_lite0"},
        "encoder_init": "imagenet",
        "epoch": 7,
        "jaccard": 0.41234,
        "tuning": {"overall_tuned": 0.45, "subset": "val"},
        "config": {"data": {"root": "/home/me/ISIC2018", "limit": 200}},
        "dermseg_version": "0.1.0",
    }
    info = describe_model(segmenter, meta, source="best.safetensors")
    fields = dict(info["fields"])
    assert fields["Model file"] == "best.safetensors"
    assert fields["Architecture"] == "unet_aspp" and fields["Encoder"] == "tf_efficientnet_lite0"
    assert fields["Trained on"] == "ISIC2018 (first 200 images)"
    assert fields["Validation Jaccard (official)"] == "0.4123"
    assert fields["Thresholds"] == "tuned on val images"
    assert fields["Backend"] == "torch on cpu"
    assert describe_model(segmenter)["fields"][0][0] == "Target encoding"  # no description: the basics
