"""The prepared cache holds the Task 1 lesion masks: same channel as the uncached path, stamped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dermseg.data import cache as cache_mod
from dermseg.data.cache import CachedIsicDataset, open_cache, prepare_cache
from dermseg.data.dataset import IsicDataset
from dermseg.data.layout import discover
from dermseg.data.synthetic import SynthConfig, write_dataset
from dermseg.data.transforms import TransformConfig, apply, build_eval_transform, build_train_transform
from dermseg.errors import DataError

SIZE = 64


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training images with lesion masks, 2 validation images without; 128x96 px, never modified."""
    root = tmp_path_factory.mktemp("cache_lesion_src")
    config = SynthConfig(height=96)
    write_dataset(root, 4, size=128, seed=5, split="training", config=config, lesion_masks=True)
    write_dataset(root, 2, size=128, seed=5, split="validation", start_id=4, config=config)
    return root


@pytest.fixture
def data(source: Path, tmp_path: Path) -> Path:
    """A copy of ``source`` that a test may change (mtimes preserved)."""
    return Path(shutil.copytree(source, tmp_path / "data"))


def _lesion_path(data: Path, isic_id: str) -> Path:
    return data / "ISIC2018_Task1_Training_GroundTruth" / f"{isic_id}_segmentation.png"


def _uncached(data: Path) -> dict[str, np.ndarray]:
    """``IsicDataset(lesion_masks=True).load`` + the eval resize: the ``(6, h, w)`` stacks, per id."""
    samples = discover(data).samples
    ds = IsicDataset(samples, None, decode_side=SIZE, allow_missing_masks=True, lesion_masks=True)
    resize = build_eval_transform(TransformConfig(size=SIZE, crop_size=SIZE))
    out = {}
    for i, s in enumerate(samples):
        image, masks, *_ = ds.load(i)
        out[s.isic_id] = apply(resize, image, masks)[1]
    return out


def _cached(cache: Path, data: Path, ids: list[str]) -> dict[str, np.ndarray]:
    ds = CachedIsicDataset(open_cache(cache, data), ids, lesion_masks=True)
    return {isic_id: ds.load(i)[1] for i, isic_id in enumerate(ids)}


def test_lesion_channel_equals_the_uncached_path(data: Path, tmp_path: Path) -> None:
    manifest = prepare_cache(data, tmp_path / "cache", SIZE, workers=1)
    expected = _uncached(data)
    ids = sorted(expected)
    with_lesion = {s.isic_id for s in manifest.samples if s.lesion}
    assert with_lesion == {f"ISIC_000000{k}" for k in range(4)}  # the training split only

    six = CachedIsicDataset(manifest, ids, lesion_masks=True)
    five = CachedIsicDataset(manifest, ids)
    for i, isic_id in enumerate(ids):
        masks = six.load(i)[1]
        assert masks.shape == (6, *six.load(i)[0].shape[:2]) and masks.dtype == np.uint8
        np.testing.assert_array_equal(masks, expected[isic_id])
        np.testing.assert_array_equal(five.load(i)[1], masks[:5])  # (5, h, w) without the option
        assert masks[5].any() == (isic_id in with_lesion)  # zeros where there is no lesion mask
        assert six[i]["masks"].shape == five[i]["masks"].shape == (5, *masks.shape[1:])
        # presence (for balanced sampling): the attributes, never the lesion channel
        assert six.presence(i).tolist() == masks[:5].reshape(5, -1).any(axis=1).tolist()
    folder = IsicDataset(discover(data).samples, lesion_masks=True)
    by_id = {s.isic_id: k for k, s in enumerate(folder.samples)}
    assert all(six.presence(i).tolist() == folder.presence(by_id[x]).tolist() for i, x in enumerate(ids))

    record = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    for split in record["splits"].values():
        for entry in split["samples"]:
            assert entry["lesion"] == (entry["lesion_mask"] is not None) == (entry["id"] in with_lesion)
    entry = record["splits"]["training"]["samples"][0]
    assert entry["lesion_mask"]["path"] == "ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png"

    # workers give the same bytes (the mask file's length depends on which samples have a lesion)
    two = prepare_cache(data, tmp_path / "two", SIZE, workers=2)
    for name, split in manifest.splits.items():
        a, b = tmp_path / "cache" / split.masks_file, tmp_path / "two" / two.splits[name].masks_file
        assert a.read_bytes() == b.read_bytes()


def test_lesion_centred_training_items_equal_the_uncached_path(data: Path, tmp_path: Path) -> None:
    manifest = prepare_cache(data, tmp_path / "cache", SIZE, workers=1)
    samples = discover(data).splits["training"].samples
    ids = [s.isic_id for s in samples]
    transform = build_train_transform(
        TransformConfig(size=SIZE, crop_size=24, lesion_crop=1.0, color_jitter=0.0), seed=0
    )
    cached = CachedIsicDataset(manifest, ids, transform, lesion_masks=True)
    uncached = IsicDataset(samples, transform, decode_side=SIZE, lesion_masks=True)
    for i in range(len(ids)):
        transform.reseed(i)
        a = cached[i]
        transform.reseed(i)
        b = uncached[i]
        assert a["masks"].shape == (5, 24, 24)
        assert np.array_equal(a["masks"].numpy(), b["masks"].numpy())  # the same crop, same masks
        assert (a["image"] - b["image"]).abs().max() < 0.05  # images agree within a grey level or so


def test_a_dataset_without_lesion_masks_gives_a_zero_sixth_channel(data: Path, tmp_path: Path) -> None:
    shutil.rmtree(data / "ISIC2018_Task1_Training_GroundTruth")
    manifest = prepare_cache(data, tmp_path / "cache", SIZE, workers=1)
    assert not any(s.lesion for s in manifest.samples)
    for split in manifest.splits.values():  # five packed channels per sample, as before
        assert split.masks_bytes == sum((5 * s.shape[0] * s.shape[1] + 7) // 8 for s in split.samples)
    ids = [s.isic_id for s in manifest.samples]
    ds = CachedIsicDataset(manifest, ids, lesion_masks=True)
    five = CachedIsicDataset(manifest, ids)
    for i in range(len(ds)):
        masks = ds.load(i)[1]
        assert masks.shape[0] == 6 and not masks[5].any()
        np.testing.assert_array_equal(masks[:5], five.load(i)[1])


def test_lesion_mask_changes_invalidate_just_their_sample(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    first = prepare_cache(data, out, SIZE, workers=1)
    lesion = _lesion_path(data, "ISIC_0000001")
    kept = tmp_path / "kept.png"
    shutil.copy2(lesion, kept)

    lesion.unlink()  # disappears
    with pytest.raises(DataError, match="removed since the cache was prepared") as err:
        open_cache(out, data)
    assert err.value.path == lesion and "dermseg prepare" in str(err.value)
    second = prepare_cache(data, out, SIZE, workers=1)
    assert second.rebuilt == ["ISIC_0000001"]
    assert second.splits["validation"].masks_file == first.splits["validation"].masks_file
    assert not next(s for s in second.samples if s.isic_id == "ISIC_0000001").lesion
    assert not _cached(out, data, ["ISIC_0000001"])["ISIC_0000001"][5].any()

    shutil.copy2(kept, lesion)  # appears
    with pytest.raises(DataError, match="added since the cache was prepared") as err:
        open_cache(out, data)
    assert err.value.path == lesion
    assert prepare_cache(data, out, SIZE, workers=1).rebuilt == ["ISIC_0000001"]

    shutil.copyfile(_lesion_path(data, "ISIC_0000003"), _lesion_path(data, "ISIC_0000002"))  # changes
    with pytest.raises(DataError, match="changed since the cache was prepared") as err:
        open_cache(out, data)
    assert err.value.path == _lesion_path(data, "ISIC_0000002")
    assert prepare_cache(data, out, SIZE, workers=1).rebuilt == ["ISIC_0000002"]

    expected = _uncached(data)
    ids = sorted(expected)
    for isic_id, masks in _cached(out, data, ids).items():
        np.testing.assert_array_equal(masks, expected[isic_id])
    cached = _cached(out, data, ["ISIC_0000002", "ISIC_0000003"])
    np.testing.assert_array_equal(cached["ISIC_0000002"][5], cached["ISIC_0000003"][5])
    assert prepare_cache(data, out, SIZE, workers=1).rebuilt == []  # up to date now


def test_a_cache_of_the_previous_format_is_rebuilt(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    first = prepare_cache(data, out, SIZE, workers=1)
    # what format 1 wrote: no lesion fields in the entries
    record = json.loads((out / "manifest.json").read_text())
    record["version"] = cache_mod.FORMAT_VERSION - 1
    for split in record["splits"].values():
        for entry in split["samples"]:
            del entry["lesion"], entry["lesion_mask"]
    (out / "manifest.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match=f"cache format version {cache_mod.FORMAT_VERSION - 1}"):
        open_cache(out)

    again = prepare_cache(data, out, SIZE, workers=1)
    assert sorted(again.rebuilt) == sorted(s.isic_id for s in first.samples)
    assert not (out / first.splits["training"].masks_file).exists()  # the old data files are gone
    assert open_cache(out, data).samples == again.samples


def test_a_lesion_flag_that_contradicts_its_stamp_is_malformed(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    prepare_cache(data, out, SIZE, workers=1)
    record = json.loads((out / "manifest.json").read_text())
    record["splits"]["training"]["samples"][0]["lesion"] = False
    (out / "manifest.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match="malformed cache manifest"):
        open_cache(out)


def test_a_bad_lesion_mask_fails_preparation_naming_it(data: Path, tmp_path: Path) -> None:
    lesion = _lesion_path(data, "ISIC_0000002")
    lesion.write_bytes(b"not a png")
    with pytest.raises(DataError) as err:
        prepare_cache(data, tmp_path / "cache", SIZE, workers=1)
    assert err.value.path == lesion
    assert not (tmp_path / "cache").exists()  # nothing half-written left behind
