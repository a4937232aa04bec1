"""A model trained on lesion boxes is tuned on the ground-truth boxes and scored on what it is given."""

from __future__ import annotations

from pathlib import Path

import torch

from dermseg.data.background import detect_field_of_view
from dermseg.data.imageio import read_image, read_mask
from dermseg.data.layout import discover
from dermseg.data.lesion_box import lesion_box
from dermseg.data.synthetic import write_dataset
from dermseg.evaluation.model import evaluate_checkpoint, tune_checkpoint
from dermseg.inference.segmenter import Segmenter

META = {
    "encoding": "multilabel",
    "input_size": 32,
    "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
    "thresholds": [0.5] * 5,
    "field": {"kind": "lesion", "margin": 0.1},
}


class Shapes(torch.nn.Module):
    """Logits 0 everywhere; remembers the shape of every input."""

    dermseg_arch = "test"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((int(x.shape[2]), int(x.shape[3])))
        return torch.zeros((x.shape[0], 5, *x.shape[2:]))


def _working_shape(height: int, width: int, side: int = 32) -> tuple[int, int]:
    short = min(height, width)
    return round(height * side / short), round(width * side / short)


def test_tuning_uses_the_ground_truth_lesion_boxes_and_scoring_does_not(tmp_path: Path) -> None:
    write_dataset(tmp_path, 3, size=160, seed=4, split="training", lesion_masks=True)
    samples = discover(tmp_path).samples
    boxes, fovs = [], []
    for s in samples:
        image = read_image(s.image_path)
        fov = detect_field_of_view(image)
        box = lesion_box(read_mask(s.lesion_mask_path), 0.1, within=fov)
        boxes.append(_working_shape(box.height, box.width))
        fovs.append(_working_shape(fov.height, fov.width))
    assert boxes != fovs  # the lesion boxes are not the fields of view here
    model = Shapes()
    seg = Segmenter.from_model(model, META)
    tune_checkpoint(seg, samples)
    assert model.seen == boxes
    model.seen.clear()
    evaluate_checkpoint(seg, samples)
    assert model.seen == fovs  # scoring never looks at the truth to choose the field
