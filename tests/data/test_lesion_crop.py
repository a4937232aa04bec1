"""Lesion-centred training crops (``dermseg.data.lesion_crop``) through the train transform."""

from __future__ import annotations

import numpy as np

from dermseg.data.transforms import TransformConfig, apply, build_train_transform


def test_lesion_centred_crop_lands_on_the_lesion() -> None:
    image = np.zeros((256, 512, 3), np.uint8)
    masks = np.zeros((6, 256, 512), np.uint8)
    masks[5, 200:210, 480:490] = 1  # a small lesion in a corner, the last channel

    def hits(p: float) -> int:
        t = build_train_transform(TransformConfig(size=256, crop_size=64, lesion_crop=p), seed=0)
        count = 0
        for seed in range(40):
            t.reseed(seed)
            _, out = apply(t, image, masks)
            count += int(out[5].any())
        return count

    assert hits(1.0) == 40 and hits(0.0) < 10
