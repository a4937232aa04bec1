"""Images with image-level labels as training items, mixed with mask-labelled images
(``dermseg.data.weak_dataset``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from dermseg.data.dataset import IsicDataset
from dermseg.data.layout import discover
from dermseg.data.weak_dataset import (
    MixedDataset,
    WeakLabelDataset,
    find_weak_images,
    load_weak_set,
    weak_fields,
)
from dermseg.data.weak_labels import read_weak_labels
from dermseg.errors import DataError
from tests.conftest import write_sample
from tests.data.label_set_data import PH2_CSV_HEADER
from tests.data.test_weak_labels import DERM7PT_HEADER, DERM7PT_ROWS, PH2_ROWS, write

P = ATTRIBUTES.index("pigment_network")


def _image(path: Path, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path)


def test_weak_fields_present_absent_unknown() -> None:
    presence, known = weak_fields({"globules": True, "streaks": False})
    assert known.tolist() == [True, False, False, False, True]  # G, M, N, P, S
    assert presence.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0] and presence.dtype == np.float32


def test_ph2_images_are_found_in_the_flat_and_the_distributed_form(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    labels = write(flat / "labels.csv", PH2_CSV_HEADER, *PH2_ROWS)
    for image in ("IMD003", "IMD016", "IMD058"):
        _image(flat / "images" / f"{image}.jpg")
    weak = read_weak_labels(labels)
    assert find_weak_images(weak) == {k: flat / "images" / f"{k}.jpg" for k in ("IMD003", "IMD016", "IMD058")}
    tree = tmp_path / "PH2Dataset"
    for image in ("IMD003", "IMD016", "IMD058"):
        _image(tree / "PH2 Dataset images" / image / f"{image}_Dermoscopic_Image" / f"{image}.bmp")
    assert find_weak_images(weak, tree)["IMD058"].name == "IMD058.bmp"
    (flat / "images" / "IMD016.jpg").unlink()
    (flat / "images" / "IMD058.jpg").unlink()
    with pytest.raises(DataError, match=r"image IMD016 \(and 1 more\) listed here is not found") as err:
        find_weak_images(weak)
    assert err.value.path == labels


def test_derm7pt_images_are_under_the_release_folder(tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    meta = write(tmp_path / "meta" / "meta.csv", DERM7PT_HEADER, *DERM7PT_ROWS)
    for row in DERM7PT_ROWS:
        _image(tmp_path / "images" / row.split(",")[2])
    found = find_weak_images(read_weak_labels(meta))
    assert found["Aal/Aal002.jpg"] == tmp_path / "images" / "Aal" / "Aal002.jpg"


def test_a_mixed_set_gives_each_item_its_flags(flat_dataset: Path, tmp_path: Path) -> None:
    """Masked items: labelled all True, weak all False; weak items: labelled all False, their
    known attributes flagged with their targets, the other attributes neither."""
    layout = discover(flat_dataset)
    masked = IsicDataset(layout.samples, None, crop_background=False)
    csv = write(
        tmp_path / "weak.csv",
        "image,attribute,present",
        "lesion_a,streaks,1",
        "lesion_a,globules,0",
        "lesion_b,pigment_network,1",
    )
    _image(tmp_path / "lesion_a.png")
    _image(tmp_path / "images" / "lesion_b.jpg", (50, 20))
    weak = load_weak_set(csv, None, None, None, crop_background=False)
    assert isinstance(weak, WeakLabelDataset) and len(weak) == 2
    mixed = MixedDataset(masked, weak)
    assert len(mixed) == 5
    first = mixed[0]
    assert first["labelled"].all() and not first["weak"].any() and not first["weak_presence"].any()
    a, b = mixed[3], mixed[4]
    assert a["id"] == "lesion_a" and a["image"].shape == (3, 30, 40) and a["masks"].shape == (5, 30, 40)
    assert not a["labelled"].any() and not a["masks"].any()
    assert a["weak"].tolist() == [True, False, False, False, True]
    assert a["weak_presence"].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert b["weak"].tolist() == [False, False, False, True, False] and b["weak_presence"][P] == 1.0
    batch = torch.utils.data.default_collate([first, a])  # one batch holds both kinds
    assert batch["weak"].shape == (2, 5) and batch["labelled"].shape == (2, 5)


def test_a_mixed_set_needs_one_shared_transform(flat_dataset: Path, tmp_path: Path) -> None:
    masked = IsicDataset(discover(flat_dataset).samples, lambda **kw: kw, crop_background=False)
    write_sample(tmp_path / "w", "ISIC_0000009")
    csv = write(tmp_path / "w" / "weak.csv", "image,attribute,present", "ISIC_0000009,streaks,1")
    weak = load_weak_set(csv, "csv", tmp_path / "w", None)
    with pytest.raises(ValueError, match="share"):
        MixedDataset(masked, weak)
