"""Datasets and the prepared cache with a label set: ``(C, H, W)`` masks equal to the files' pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.data.cache import CachedIsicDataset, open_cache, prepare_cache
from dermseg.data.dataset import IsicDataset
from dermseg.data.layout import discover
from dermseg.errors import ConfigError, DataError
from dermseg.labels import DEFAULT, ISIC2018_TASK1, PH2, load_label_set
from tests.conftest import PH2_SAMPLE, real_data
from tests.data.label_set_data import (
    PH2_SIZE,
    USER_SIZE,
    ph2_mask,
    task1_mask,
    user_mask,
    write_ph2_flat,
    write_ph2_tree,
    write_task1_case,
    write_user_dataset,
    write_user_yaml,
)


def _u8(*masks: np.ndarray) -> np.ndarray:
    return np.stack(masks).astype(np.uint8)


def test_ph2_tree_items_read_the_bmps(tmp_path: Path) -> None:
    layout = discover(write_ph2_tree(tmp_path), PH2)
    ds = IsicDataset(layout.samples, crop_background=False)
    assert ds.labels is PH2 and len(ds) == 5
    w, h = PH2_SIZE
    for k, image_id in enumerate(["IMD002", "IMD004", "IMD010", "IMD017", "IMD058"]):
        item = ds[k]
        assert item["id"] == image_id
        assert item["image"].shape == (3, h, w)
        assert item["masks"].shape == (1, h, w)
        assert np.array_equal(item["masks"].numpy(), _u8(ph2_mask(image_id)))
        assert item["labelled"].tolist() == [True]
        assert item["size"].tolist() == [h, w]
        assert ds.presence(k).tolist() == [True]
    # the lesion channel for lesion-centred crops is the set's own mask again, dropped from items
    masks = IsicDataset(layout.samples, crop_background=False, lesion_masks=True).load(4)[1]
    assert masks.shape == (2, h, w) and np.array_equal(masks, _u8(ph2_mask("IMD058"), ph2_mask("IMD058")))


def test_ph2_bmp_pixels_are_decoded(tmp_path: Path) -> None:
    root = write_ph2_tree(tmp_path)
    layout = discover(root, PH2)
    image, *_ = IsicDataset(layout.samples, crop_background=False).load(0)
    expected = np.random.default_rng(0).integers(0, 256, (PH2_SIZE[1], PH2_SIZE[0], 3), np.uint8)
    assert np.array_equal(image, expected)  # BMP is lossless: IMD002 is written with seed 0


def test_ph2_flat_form_items(tmp_path: Path) -> None:
    ds = IsicDataset(discover(write_ph2_flat(tmp_path / "flat"), PH2).samples, crop_background=False)
    w, h = PH2_SIZE
    item = ds[3]
    assert item["id"] == "IMD017" and item["image"].shape == (3, h, w)
    assert np.array_equal(item["masks"].numpy(), _u8(ph2_mask("IMD017")))


@real_data
def test_real_ph2_flat_sample_reads_jpeg_and_png() -> None:
    layout = discover(PH2_SAMPLE, PH2)
    ds = IsicDataset(layout.samples[:2], crop_background=False)
    for k, image_id in enumerate(["IMD003", "IMD004"]):
        image, masks, labelled, _, full = ds.load(k)
        with Image.open(PH2_SAMPLE / "images" / f"{image_id}.jpg") as img:
            w, h = img.size
        with Image.open(PH2_SAMPLE / "masks" / f"{image_id}_lesion.png") as m:
            truth = np.asarray(m.convert("L")) > 128
        assert image.shape == (h, w, 3) and full == (h, w)
        assert masks.shape == (1, h, w) and np.array_equal(masks[0], truth.astype(np.uint8))
        assert labelled.tolist() == [True] and 0 < truth.mean() < 1


def test_task1_items(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    write_task1_case(root, root, "ISIC_0000001")
    ds = IsicDataset(discover(root, ISIC2018_TASK1).samples, crop_background=False)
    item = ds[0]
    assert item["masks"].shape == (1, 10, 20)
    assert np.array_equal(item["masks"].numpy(), _u8(task1_mask("ISIC_0000001")))


def test_user_set_items_and_a_missing_label(tmp_path: Path) -> None:
    labels = load_label_set(write_user_yaml(tmp_path / "sets"))
    root = write_user_dataset(tmp_path / "data")
    samples = discover(root, labels).samples  # b2, lesion_a
    with pytest.raises(DataError) as info:
        IsicDataset(samples, crop_background=False)
    assert info.value.path == root / "b2.png" and "missing mask b2_regression.png" in str(info.value)
    ds = IsicDataset(samples, crop_background=False, allow_missing_masks=True, labels=labels)
    w, h = USER_SIZE
    b2, a = ds[0], ds[1]
    assert a["masks"].shape == (2, h, w)
    assert np.array_equal(
        a["masks"].numpy(), _u8(user_mask("lesion_a.jpg", "veil"), user_mask("lesion_a.jpg", "regression"))
    )
    assert a["labelled"].tolist() == [True, True]
    assert np.array_equal(b2["masks"].numpy(), _u8(user_mask("b2.png", "veil"), np.zeros((h, w), bool)))
    assert b2["labelled"].tolist() == [True, False]


def test_samples_of_another_set_are_refused(tmp_path: Path) -> None:
    samples = discover(write_ph2_tree(tmp_path), PH2).samples
    with pytest.raises(ConfigError, match="label set ph2"):
        IsicDataset(samples, labels=DEFAULT)
    IsicDataset(samples, labels=ISIC2018_TASK1)  # the same one label: accepted


# --------------------------------------------------------------------------- the prepared cache


def test_cache_of_ph2_stores_one_channel_and_the_set(tmp_path: Path) -> None:
    data = write_ph2_tree(tmp_path / "data")
    out = tmp_path / "cache"
    w, h = PH2_SIZE
    manifest = prepare_cache(data, out, size=h, workers=1, crop_background=False, labels=PH2)
    assert manifest.labels is PH2 and sorted(manifest.rebuilt) == sorted(
        discover(data, PH2).splits["all"].ids
    )
    raw = json.loads((out / "manifest.json").read_text())
    assert raw["label_set"]["name"] == "ph2" and raw["label_set"]["labels"][0]["name"] == "lesion"
    assert len(raw["splits"]["all"]["samples"][0]["masks"]) == 1
    cache = open_cache(out, data)
    assert cache.labels == PH2
    ds = CachedIsicDataset(cache, ["IMD058", "IMD002"])
    assert ds.labels == PH2
    for k, image_id in enumerate(["IMD058", "IMD002"]):
        image, masks, labelled, _, full = ds.load(k)
        assert image.shape == (h, w, 3) and full == (h, w)
        assert np.array_equal(masks, _u8(ph2_mask(image_id)))
        assert labelled.tolist() == [True]
        assert ds[k]["masks"].shape == (1, h, w)
    with_lesion = CachedIsicDataset(cache, ["IMD017"], lesion_masks=True).load(0)[1]
    assert np.array_equal(with_lesion, _u8(ph2_mask("IMD017"), ph2_mask("IMD017")))
    with pytest.raises(DataError, match="holds label set ph2") as info:
        CachedIsicDataset(cache, ["IMD058"], labels=DEFAULT)
    assert info.value.path == out and "--labels ph2" in str(info.value)


def test_cache_rebuilds_when_the_label_set_differs(tmp_path: Path) -> None:
    sets = tmp_path / "sets"
    first = load_label_set(write_user_yaml(sets))
    other_yaml = (sets / "veil.yaml").read_text().replace("veil_and_regression", "other_name")
    second = load_label_set(write_user_yaml(sets, other_yaml, "other.yaml"))
    data = write_user_dataset(tmp_path / "data")
    out = tmp_path / "cache"
    h = USER_SIZE[1]
    assert sorted(prepare_cache(data, out, h, workers=1, crop_background=False, labels=first).rebuilt) == [
        "b2",
        "lesion_a",
    ]
    assert prepare_cache(data, out, h, workers=1, crop_background=False, labels=first).rebuilt == []
    again = prepare_cache(data, out, h, workers=1, crop_background=False, labels=second)
    assert sorted(again.rebuilt) == ["b2", "lesion_a"]  # another set: everything again
    assert json.loads((out / "manifest.json").read_text())["label_set"]["name"] == "other_name"
    assert len(list(out.glob("*.u8"))) == 2  # the first set's data files are gone
    masks = CachedIsicDataset(open_cache(out, data), ["lesion_a"]).load(0)[1]
    assert np.array_equal(
        masks, _u8(user_mask("lesion_a.jpg", "veil"), user_mask("lesion_a.jpg", "regression"))
    )
    b2 = CachedIsicDataset(open_cache(out), ["b2"], allow_missing_masks=True).load(0)
    assert b2[2].tolist() == [True, False]
    with pytest.raises(DataError, match="b2 lacks masks"):
        CachedIsicDataset(open_cache(out), ["b2"])


def test_task2_cache_manifest_is_as_before(flat_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    prepare_cache(flat_dataset, out, 20, workers=1, crop_background=False)
    raw = json.loads((out / "manifest.json").read_text())
    assert list(raw) == ["format", "version", "size", "crop_background", "decode", "data_dir", "splits"]
    assert raw["version"] == 3  # 3: each item carries its checksum (issue 16)
    assert raw["decode"] == (
        "jpeg draft at size, background crop, short side resized to size; "
        "masks packed as (5, h, w), or (6, h, w) with the lesion mask last"
    )
    assert open_cache(out, flat_dataset).labels is DEFAULT
    # an old Task 2 cache (no label_set key) is up to date for Task 2: nothing decoded again
    assert prepare_cache(flat_dataset, out, 20, workers=1, crop_background=False).rebuilt == []
