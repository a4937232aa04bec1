"""Attribute-balanced sampling (a 2018 winners' trick): rare attributes are drawn more often."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dermseg.config import load_config
from dermseg.data.sampling import ResumableSampler, attribute_balance_weights
from dermseg.training.loop import train
from tests.conftest import QUICK_TRAIN


def test_balanced_sampling_draws_rare_attribute_images_more_often(
    synth_dataset: Path, tmp_path: Path
) -> None:
    cfg = load_config(None, [*QUICK_TRAIN, "data.balance=1.0"])
    train(cfg, synth_dataset, tmp_path / "run")
    presence = np.array(json.loads((tmp_path / "run" / "sampling_presence.json").read_text())["presence"])
    rarest = int(np.argmin(np.where(presence.sum(0) > 0, presence.sum(0), 10**9)))
    holders = presence[:, rarest].astype(bool)

    def share(weights: np.ndarray | None) -> float:
        s = ResumableSampler(len(presence), seed=0, batch_size=4, weights=weights)
        drawn = []
        for epoch in range(200):
            s.set_epoch(epoch)
            drawn += [i for i, _ in s]
        return float(holders[drawn].mean())

    assert share(attribute_balance_weights(presence, 1.0)) > share(None) + 0.05
