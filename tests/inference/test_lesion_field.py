"""A lesion model choosing the field a structure model sees."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from dermseg.data.background import CropBox
from dermseg.errors import DataError
from dermseg.inference.lesion_field import LesionBox, LesionField, dilated, trained_field
from dermseg.inference.segmenter import Segmenter
from dermseg.labels import BUILTIN, DEFAULT, LabelSet

META = {
    "encoding": "multilabel",
    "input_size": 32,
    "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
    "thresholds": [0.5] * 5,
    "crop_background": False,
}


@dataclass
class FixedLesion:
    """A stand-in lesion model that always finds ``mask``."""

    mask: np.ndarray
    labels: LabelSet = BUILTIN["isic2018_task1"]

    def masks(self, image: np.ndarray) -> np.ndarray:
        return self.mask[None].copy()


class Sure(torch.nn.Module):
    """Logits +20 everywhere; remembers the shape of what it was shown."""

    dermseg_arch = "test"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return torch.full((x.shape[0], 5, *x.shape[2:]), 20.0)


def _lesion() -> np.ndarray:
    mask = np.zeros((200, 300), bool)
    mask[80:120, 100:180] = True  # 40 x 80: the box with margin 0.25 is rows 60..140, cols 80..200
    return mask


def test_the_structure_model_sees_only_the_lesion_box_resized_to_its_working_size() -> None:
    model = Sure()
    seg = Segmenter.from_model(model, META)
    image = np.full((200, 300, 3), 120, np.uint8)
    seg.probabilities(image)
    assert model.seen[-1] == (1, 3, 32, 48)  # the whole 200 x 300 image, short side to 32
    seg.use_lesion_model(FixedLesion(_lesion()), margin=0.25)  # type: ignore[arg-type]
    field = seg.field_of_view(image)
    assert isinstance(field, LesionBox) and field.found
    assert field.to_dict() == CropBox(60, 80, 140, 200).to_dict()
    probs = seg.probabilities(image, field)
    assert model.seen[-1] == (1, 3, 32, 48)  # the 80 x 120 box, short side to 32
    assert probs[:, 60:140, 80:200].min() > 0.99  # inside the box: the model's answer
    assert probs[:, :60].max() == 0 and probs[:, :, 200:].max() == 0  # outside: nothing
    assert seg.field_description.startswith("field: lesion box from lesion model (margin 0.25")


def test_structures_outside_the_dilated_lesion_can_be_emptied() -> None:
    seg = Segmenter.from_model(Sure(), META)
    seg.use_lesion_model(FixedLesion(_lesion()), margin=0.25, empty_outside=True)  # type: ignore[arg-type]
    pred = seg(np.full((200, 300, 3), 120, np.uint8))
    # dilated by 0.05 x 80 = 4 pixels (Euclidean): rows 76..123 and columns 96..183 stay
    assert pred.masks[:, 80:120, 100:180].all()
    assert (
        pred.masks[:, 76:124, 140].all()
        and not pred.masks[:, 75, 140].any()
        and not pred.masks[:, 124, 140].any()
    )
    assert (
        pred.masks[:, 100, 96:184].all()
        and not pred.masks[:, 100, 95].any()
        and not pred.masks[:, 100, 184].any()
    )
    assert not pred.masks[:, 77, 97].any()  # a corner 4.2 pixels away


def test_without_a_lesion_the_whole_field_is_used() -> None:
    seg = Segmenter.from_model(Sure(), META)
    seg.use_lesion_model(FixedLesion(np.zeros((200, 300), bool)), empty_outside=True)  # type: ignore[arg-type]
    field = seg.field_of_view(np.full((200, 300, 3), 120, np.uint8))
    assert field.to_dict() == CropBox(0, 0, 200, 300).to_dict()
    assert isinstance(field, LesionBox) and not field.found and field.region is None


def test_only_a_one_label_model_can_be_the_lesion_model_of_a_structure_model() -> None:
    with pytest.raises(DataError, match="is not a lesion model"):
        LesionField(FixedLesion(_lesion(), labels=DEFAULT))  # type: ignore[arg-type]
    lesion_seg = Segmenter.from_model(
        Sure(), {**META, "thresholds": [0.5], "labels": BUILTIN["ph2"].to_meta()}
    )
    with pytest.raises(DataError, match="segments label set ph2"):
        lesion_seg.use_lesion_model(FixedLesion(_lesion()))  # type: ignore[arg-type]


def test_the_default_margin_is_the_one_the_model_was_trained_with() -> None:
    meta = {**META, "field": {"kind": "lesion", "margin": 0.5}}
    seg = Segmenter.from_model(Sure(), meta)
    assert seg.trained_field == ("lesion", 0.5)
    assert "trained on lesion boxes" in seg.field_description
    seg.use_lesion_model(FixedLesion(_lesion()))  # type: ignore[arg-type]
    assert seg.lesion_field is not None and seg.lesion_field.margin == 0.5
    assert seg.field_description.endswith("(as trained)")
    assert trained_field({"checkpoint_meta": meta}) == ("lesion", 0.5)  # as an ONNX export keeps it
    assert trained_field(META) == ("fov", None)
    with pytest.raises(DataError, match="field"):
        trained_field({"field": {"kind": "lesion", "margin": 7}})


def test_dilation_is_euclidean() -> None:
    mask = np.zeros((21, 21), bool)
    mask[10, 10] = True
    grown = dilated(mask, 3.0)
    assert grown[10, 13] and grown[12, 12] and not grown[10, 14] and not grown[13, 13]


class SureLesion(torch.nn.Module):
    """A one-label model: logit +20 everywhere (the whole image is the lesion)."""

    dermseg_arch = "test"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[2:]), 20.0)


def test_the_lesion_model_follows_the_shape_limits_given_to_the_structure_model() -> None:
    from dermseg.cli.app import limit_shapes
    from dermseg.data.shape_limits import ImageShapeError

    wide = np.full((20, 220, 3), 120, np.uint8)  # aspect 11: beyond the default limit of 8
    lesion_meta = META | {"labels": "isic2018_task1", "thresholds": [0.5]}
    for limits_first in (True, False):  # serve sets the limits after the lesion model, predict before
        seg = Segmenter.from_model(Sure(), META)
        lesion = Segmenter.from_model(SureLesion(), lesion_meta)
        with pytest.raises(ImageShapeError):
            lesion.masks(wide)
        if limits_first:
            limit_shapes(seg, 12, 16)
            seg.use_lesion_model(lesion)
        else:
            seg.use_lesion_model(lesion)
            limit_shapes(seg, 12, 16)
        assert seg(wide).masks.shape == (5, 20, 220)  # the lesion model accepted it too
