"""The auxiliary presence head (a 2018 winners' trick): trained, saved, and gating the masks."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from dermseg.config import load_config
from dermseg.inference.segmenter import Segmenter
from dermseg.models.checkpoint import load_checkpoint, read_meta
from dermseg.training.loop import train
from tests.conftest import QUICK_TRAIN


def test_presence_head_trains_and_gates_the_masks(synth_dataset: Path, tmp_path: Path) -> None:
    cfg = load_config(None, [*QUICK_TRAIN, "model.presence_head=true", "loss.presence_weight=1.0"])
    train(cfg, synth_dataset, tmp_path / "run")
    path = tmp_path / "run" / "checkpoints" / "best.safetensors"
    assert read_meta(path)["model_kwargs"]["presence_head"] is True
    assert any(k.startswith("presence_head.") for k in load_checkpoint(path).state_dict)

    # the presence head set by hand to logits ln(1/3), 0, 30, -30, ln 3 whatever the image: the
    # masks are the ungated probabilities times 1/4, 1/2, 1, 0 and 3/4
    segmenter = Segmenter.from_checkpoint(path)
    head = segmenter.model.presence_head
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([math.log(1 / 3), 0.0, 30.0, -30.0, math.log(3)]))
    x = torch.randn(1, 3, 96, 96)
    gated = segmenter.network_probabilities(x)
    segmenter.model.presence_head = None  # the same network without its head: plain sigmoids
    plain = segmenter.network_probabilities(x)
    assert 0.05 < plain.mean() < 0.95  # so that the factors below are visible
    gate = torch.tensor([0.25, 0.5, 1.0, 0.0, 0.75]).view(1, 5, 1, 1)
    torch.testing.assert_close(gated, plain * gate, atol=1e-6, rtol=1e-5)
