"""The web app follows the model's label set: its labels, colours and texts in ``/api/info``, one
mask per label named as the set names it, in the result and in the zip."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient

from dermseg.inference.segmenter import Segmenter
from dermseg.labels import ISIC2018_TASK1, PH2
from dermseg.serve import create_app
from tests.serve.conftest import META, encode, square_image

LESION_META = {**META, "thresholds": [0.5], "labels": PH2.to_meta()}


class BrightLesion(torch.nn.Module):
    """One logit, (mean RGB - 0.5) * 20: the bright pixels are the lesion."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.mean(1, keepdim=True) - 0.5) * 20


@pytest.fixture(scope="module")
def lesion_segmenter() -> Segmenter:
    return Segmenter.from_model(BrightLesion(), LESION_META)


@pytest.fixture
def client(lesion_segmenter: Segmenter) -> TestClient:
    return TestClient(create_app(lesion_segmenter, meta=LESION_META, source="ph2.safetensors"))


def test_info_lists_the_set_labels(client: TestClient) -> None:
    info = client.get("/api/info").json()
    assert info["attributes"] == [{"name": "lesion", "display_name": "Lesion", "colour": [255, 64, 64]}]
    assert info["labels"]["name"] == "ph2" and info["labels"]["metric"] == "isic2018_task1"
    assert info["model"]["thresholds"] == {"lesion": 0.5}
    assert ["Label set", "ph2 (Lesion)"] in info["model"]["fields"]
    assert "IMD<id>_lesion.png" not in info["texts"]["download_help"]
    assert "<id>_lesion.png" in info["texts"]["download_help"] and "ph2" in info["texts"]["download_help"]
    assert "attribute" not in info["help"]["presence"]


def test_predict_returns_one_lesion_mask_named_by_the_set(
    client: TestClient, lesion_segmenter: Segmenter
) -> None:
    image = square_image(40)  # a bright 40 x 40 square in a dark 160 x 120 image
    result = client.post("/api/predict", files={"file": ("IMD003.png", encode(image), "image/png")}).json()
    assert result["stem"] == "IMD003"
    (lesion,) = result["attributes"]
    assert lesion["name"] == "lesion" and lesion["mask_name"] == "IMD003_lesion.png"
    # the square, give or take its edge (the network sees the image at 64 px)
    assert lesion["area_percent"] == pytest.approx(1600 / 19200 * 100, abs=1.0)
    assert lesion["detected"] is True and lesion["colour"] == [255, 64, 64]
    mask = np.asarray(Image.open(io.BytesIO(client.get(lesion["mask_url"]).content)))
    assert mask.shape == (120, 160) and set(np.unique(mask)) <= {0, 255}
    square = np.zeros((120, 160), bool)
    square[20:60, 20:60] = True
    assert (mask > 128)[22:58, 22:58].all() and not (mask > 128)[~np.pad(square, 2)[2:-2, 2:-2]].any()
    expected = lesion_segmenter(image).masks[0]  # what the model itself says, at the image size
    assert np.array_equal(mask > 128, expected)
    archive = client.get(result["zip_url"])
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        assert zf.namelist() == ["IMD003_lesion.png"]
        assert np.array_equal(
            np.asarray(Image.open(io.BytesIO(zf.read("IMD003_lesion.png")))) > 128, expected
        )
    missing = client.get(lesion["mask_url"].replace("lesion.png", "globules.png"))
    assert missing.status_code == 404 and "expected one of lesion" in missing.json()["error"]


def test_isic_task1_names(lesion_segmenter: Segmenter) -> None:
    from dataclasses import replace

    seg = replace(lesion_segmenter, labels=ISIC2018_TASK1)
    client = TestClient(create_app(seg))
    image = square_image(20)
    result = client.post(
        "/api/predict", files={"file": ("ISIC_0012345.jpg", encode(image), "image/png")}
    ).json()
    assert [a["mask_name"] for a in result["attributes"]] == ["ISIC_0012345_segmentation.png"]


def test_task2_info_keeps_its_page_texts(segmenter: Segmenter) -> None:
    info = TestClient(create_app(segmenter)).get("/api/info").json()
    assert info["labels"]["name"] == "isic2018_task2"
    assert info["texts"]["subtitle"] == "Dermoscopic structures · ISIC 2018 Task 2"


def test_serve_command_uses_the_checkpoint_label_set(tmp_path: Path, monkeypatch) -> None:
    """``dermseg serve`` builds the app from the checkpoint: its label set reaches the page."""
    from dermseg import serve as serve_module
    from dermseg.cli import main
    from tests.label_set_models import write_lesion_checkpoint

    ckpt = write_lesion_checkpoint(tmp_path / "ph2.safetensors")
    seen: dict = {}

    def fake_serve_forever(app, sock, limits=None) -> None:  # stop before serving: look at the app instead
        seen["info"] = TestClient(app, base_url="http://127.0.0.1:8000").get("/api/info").json()

    monkeypatch.setattr(serve_module, "serve_forever", fake_serve_forever)
    assert main(["serve", "--checkpoint", str(ckpt), "--port", "0"]) == 0
    assert [a["name"] for a in seen["info"]["attributes"]] == ["lesion"]
