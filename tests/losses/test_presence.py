"""The presence head's targets and loss (``dermseg.losses.presence``), by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermseg.losses.presence import presence_loss, presence_targets


def test_presence_targets_and_loss_by_hand() -> None:
    masks = torch.zeros(2, 5, 2, 2)
    masks[0, 1, 0, 0] = 1
    assert presence_targets(masks).tolist() == [[0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]
    logits = torch.zeros(2, 5)  # sigmoid 0.5: BCE ln 2 whatever the target
    assert presence_loss(logits, masks).item() == pytest.approx(np.log(2))
    labelled = torch.zeros(2, 5, dtype=torch.bool)
    assert presence_loss(logits, masks, labelled).item() == 0.0  # nothing labelled, nothing learnt
    confident = torch.full((2, 5), -20.0)
    confident[0, 1] = 20.0
    assert presence_loss(confident, masks).item() < 1e-6
