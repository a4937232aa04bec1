"""Synthetic draws as training items: deterministic by (seed, k), rare-only, the real transform."""

from __future__ import annotations

import numpy as np
import pytest

from dermseg.attributes import ATTRIBUTES
from dermseg.data.synthetic import SynthConfig, render_sample, sample_rng
from dermseg.data.synthetic_draws import RARE_ATTRIBUTES, SyntheticDraws, WithSyntheticDraws, draw_sample
from dermseg.data.transforms import TransformConfig, build_train_transform

CONFIG = SynthConfig(size=64)
RARE = [ATTRIBUTES.index(a) for a in RARE_ATTRIBUTES]


def test_a_draw_is_a_function_of_seed_and_k() -> None:
    a, b = draw_sample(3, 7, CONFIG), draw_sample(3, 7, CONFIG)
    assert a.image.tobytes() == b.image.tobytes() and a.masks.tobytes() == b.masks.tobytes()
    assert a.image.shape == (64, 64, 3) and a.masks.shape == (5, 64, 64)
    assert draw_sample(3, 8, CONFIG).image.tobytes() != a.image.tobytes()  # another draw
    assert draw_sample(4, 7, CONFIG).image.tobytes() != a.image.tobytes()  # another seed


def test_a_draw_is_never_an_image_dermseg_synth_writes() -> None:
    synth = render_sample(sample_rng(3, "training", 7), CONFIG)
    assert synth.image.tobytes() != draw_sample(3, 7, CONFIG).image.tobytes()


def test_rare_only_draws_hold_streaks_or_negative_network() -> None:
    draws = [draw_sample(0, k, CONFIG, rare_only=True) for k in range(12)]
    assert all(d.presence[RARE].any() and d.masks[RARE].any() for d in draws)
    assert {bool(d.presence[ATTRIBUTES.index("streaks")]) for d in draws} == {True, False}  # both kinds
    plain = [draw_sample(0, k, CONFIG).presence[RARE].any() for k in range(12)]
    assert not all(plain)  # without rare_only most draws hold neither (about 1 in 9 does)
    with pytest.raises(ValueError, match="never draws"):
        draw_sample(0, 0, SynthConfig(size=64, presence={"globules": 0.5}), rare_only=True)


def test_items_go_through_the_real_transform_and_are_annotated() -> None:
    transform = build_train_transform(TransformConfig(size=48, crop_size=32), seed=0)
    draws = SyntheticDraws(1, 64, transform)
    transform.reseed(11)
    item = draws[5]
    assert item["id"] == "synthetic_5" and tuple(item["image"].shape) == (3, 32, 32)
    assert tuple(item["masks"].shape) == (5, 32, 32) and bool(item["labelled"].all())
    transform.reseed(11)
    again = draws[5]
    assert np.array_equal(item["image"].numpy(), again["image"].numpy())  # same seed: byte-identical
    transform.reseed(12)
    assert not np.array_equal(item["image"].numpy(), draws[5]["image"].numpy())  # another augmentation


def test_with_synthetic_draws_puts_draw_k_after_the_real_items() -> None:
    class Real:
        transform = None

        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> dict[str, object]:
            return {"id": f"real_{index}"}

    weak = SyntheticDraws(0, 64, None, weak=True)
    both = WithSyntheticDraws(Real(), weak)
    assert both[2] == {"id": "real_2"}
    item = both[3 + 4]
    assert item["id"] == "synthetic_4" and not item["weak"].any() and not item["weak_presence"].any()
    with pytest.raises(ValueError, match="share"):
        WithSyntheticDraws(Real(), SyntheticDraws(0, 64, build_train_transform(TransformConfig(48, 32))))
