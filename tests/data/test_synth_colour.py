"""Skin and lesion colours sampled from real photographs (dermseg.data.synth_colour)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dermseg.data.realism import to_lab
from dermseg.data.synth_colour import REAL_STATS_PATH, load_real_colours, sample_colours


def _lab(rgb: np.ndarray) -> np.ndarray:
    return to_lab((rgb * 255).round().astype(np.uint8)[None, None])[0, 0]


def test_sampling_is_a_function_of_the_seed() -> None:
    a, b, c = (sample_colours(np.random.default_rng(s)) for s in (5, 5, 6))
    assert np.array_equal(a.skin, b.skin) and np.array_equal(a.lesion, b.lesion)
    assert not np.array_equal(a.skin, c.skin)


def test_samples_follow_the_measured_distribution() -> None:
    summary = json.loads(REAL_STATS_PATH.read_text())["summary"]
    rng = np.random.default_rng(0)
    draws = [sample_colours(rng) for _ in range(400)]
    skin = np.array([_lab(d.skin) for d in draws])
    lesion = np.array([_lab(d.lesion) for d in draws])
    for c, name in enumerate("Lab"):
        for part, values in (("skin", skin), ("lesion", lesion)):
            real = summary[f"{part}_{name}"]
            assert abs(values[:, c].mean() - real["mean"]) < 0.25 * real["std"] + 0.5, (part, name)
            assert 0.6 * real["std"] < values[:, c].std() < 1.4 * real["std"] + 1, (part, name)
    assert (lesion[:, 0] < skin[:, 0] - 3).all()  # a lesion is darker than its skin


def test_a_file_without_images_is_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "stats.json"
    empty.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="no per-image statistics"):
        load_real_colours(empty)


def test_a_custom_file_is_sampled_from() -> None:
    stats = load_real_colours()
    one = type(stats)(stats.lab[:1], stats.lesion_l_std[:1], "one photograph")
    draws = [sample_colours(np.random.default_rng(i), one) for i in range(50)]
    skin = np.array([_lab(d.skin) for d in draws])
    # with a single photograph the spread is zero: every draw is that photograph's colour
    assert np.abs(skin - stats.lab[0, :3]).max() < 1.0
