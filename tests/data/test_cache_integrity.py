"""Checksums of the prepared cache: an item overwritten in place (same size, mtime kept) is caught."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from dermseg.cli import main
from dermseg.data.cache import CachedIsicDataset, open_cache, prepare_cache
from dermseg.data.cache_integrity import ALGORITHM, digest
from dermseg.data.synthetic import SynthConfig, write_dataset
from dermseg.errors import DataError

SIZE = 64


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training and 1 validation synthetic images, never modified."""
    root = tmp_path_factory.mktemp("integrity_src")
    write_dataset(root, 4, size=96, seed=5, split="training", config=SynthConfig())
    write_dataset(root, 1, size=96, seed=5, split="validation", start_id=4, config=SynthConfig())
    return root


@pytest.fixture
def data(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / "data"))


def _overwrite_half(path: Path, offset: int, length: int) -> None:
    """Overwrite ``length // 2`` bytes at ``offset`` with their complement; size and mtime kept."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(offset)
        chunk = fh.read(length // 2)
        fh.seek(offset)
        fh.write(bytes(255 - b for b in chunk))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _damage_masks(out: Path, isic_id: str) -> Path:
    """Half of ``isic_id``'s cached masks overwritten; returns the masks file."""
    manifest = open_cache(out)
    split = next(s for s in manifest.splits.values() if any(e.isic_id == isic_id for e in s.samples))
    entry = next(e for e in split.samples if e.isic_id == isic_id)
    _overwrite_half(out / split.masks_file, entry.mask_offset, entry.mask_bytes)
    return out / split.masks_file


def test_the_manifest_holds_a_checksum_of_each_item(data: Path, tmp_path: Path) -> None:
    manifest = prepare_cache(data, tmp_path / "cache", SIZE, workers=1)
    record = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    sample = record["splits"]["training"]["samples"][0]
    entry = manifest.splits["training"].samples[0]
    images = (tmp_path / "cache" / manifest.splits["training"].images_file).read_bytes()
    assert sample["checksums"][0] == digest(images[entry.offset : entry.offset + entry.image_bytes])
    assert len(sample["checksums"]) == 2 and ALGORITHM == "blake2b-128"


def test_a_damaged_item_fails_on_first_read_naming_it(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    prepare_cache(data, out, SIZE, workers=1)
    ds = CachedIsicDataset(open_cache(out, data), ["ISIC_0000000", "ISIC_0000001"])
    ds.load(0)  # read (and checked) before the damage: not checked again in this process
    masks_file = _damage_masks(out, "ISIC_0000001")
    _damage_masks(out, "ISIC_0000000")
    open_cache(out, data)  # sizes and sources still agree: only the checksums can tell
    ds.load(0)
    with pytest.raises(DataError, match="ISIC_0000001: its masks do not match their checksum") as err:
        ds.load(1)
    assert err.value.path == masks_file and "dermseg prepare" in str(err.value)
    assert "\n" not in str(err.value)
    # a worker process checks the items it reads itself
    fresh = CachedIsicDataset(open_cache(out, data), ["ISIC_0000001"])
    with pytest.raises(Exception, match="ISIC_0000001: its masks do not match"):
        list(DataLoader(fresh, batch_size=1, num_workers=1))


def test_prepare_detects_and_redoes_a_damaged_item(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    first = prepare_cache(data, out, SIZE, workers=1)
    _damage_masks(out, "ISIC_0000002")
    again = prepare_cache(data, out, SIZE, workers=1)
    assert again.rebuilt == again.damaged == ["ISIC_0000002"]
    assert again.splits["validation"].masks_file == first.splits["validation"].masks_file  # untouched
    ds = CachedIsicDataset(open_cache(out, data), [s.isic_id for s in again.samples])
    for i in range(len(ds)):
        ds.load(i)
    assert prepare_cache(data, out, SIZE, workers=1).rebuilt == []


def test_cli_prepare_says_what_was_damaged(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cache"
    args = ["prepare", str(data), "--out", str(out), "--size", str(SIZE), "--workers", "1"]
    assert main(args) == 0
    _damage_masks(out, "ISIC_0000003")
    capsys.readouterr()
    assert main(args) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "1 image(s) decoded this time (1 damaged in the cache, e.g. ISIC_0000003)" in said
    assert "nothing changed" not in said
