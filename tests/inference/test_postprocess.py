from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dermseg.inference.postprocess import (
    THESIS_OPENING,
    THESIS_SIDE,
    PostprocessSettings,
    apply_postprocess,
    disk,
    remove_small_components,
    scale_kernel,
)


def _stack(channel: np.ndarray, k: int = 0) -> np.ndarray:
    """A (5, H, W) float32 stack holding ``channel`` at attribute ``k`` and zeros elsewhere."""
    probs = np.zeros((5, *channel.shape), dtype=np.float32)
    probs[k] = channel
    return probs


def test_defaults_and_broadcast():
    s = PostprocessSettings()
    assert s.thresholds == (0.5,) * 5 and s.opening == (0,) * 5
    assert s.min_area == (0,) * 5 and s.presence == (0.0,) * 5
    s = PostprocessSettings(thresholds=0.3, opening=np.array([15, 21, 21, 15, 5]), min_area=4, presence=0.2)
    assert s.thresholds == (0.3,) * 5 and s.opening == THESIS_OPENING
    assert s.min_area == (4,) * 5 and s.presence == (0.2,) * 5
    assert all(type(v) is int for v in s.opening)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"thresholds": [0.5] * 4, "opening": [0] * 5}, "all the same length"),
        ({"thresholds": 1.5}, r"\[0, 1\]"),
        ({"thresholds": "0.5"}, "numbers"),
        ({"opening": 4}, "odd"),
        ({"opening": -1}, "odd"),
        ({"opening": 2.5}, "whole"),
        ({"min_area": -3}, ">= 0"),
        ({"presence": [0.1, 0.2, 0.3, 0.4, 1.2]}, r"\[0, 1\]"),
        ({"presence": float("nan")}, "finite"),
        ({"opening": [[3] * 5]}, "one value or 5"),
    ],
)
def test_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PostprocessSettings(**kwargs)


def test_dict_round_trip_is_json():
    s = PostprocessSettings(
        thresholds=[0.1, 0.2, 0.3, 0.4, 0.5], opening=THESIS_OPENING, min_area=[0, 1, 2, 3, 4]
    )
    d = json.loads(json.dumps(s.to_dict()))
    assert PostprocessSettings.from_dict(d) == s
    # a config section (thresholds + opening only) works too; missing keys take defaults
    assert PostprocessSettings.from_dict({"opening": [3] * 5}).thresholds == (0.5,) * 5
    with pytest.raises(ValueError, match="unknown"):
        PostprocessSettings.from_dict({"threshold": 0.5})


def test_threshold_is_strict():
    probs = _stack(np.array([[0.5, 0.5000001], [0.2, 1.0]], dtype=np.float32))
    out = apply_postprocess(probs)
    assert out.dtype == bool and out.shape == (5, 2, 2)
    assert out[0].tolist() == [[False, True], [False, True]]
    assert not out[1:].any()
    # per-attribute thresholds; 0 makes every nonzero probability positive, 1 nothing
    probs = np.full((5, 2, 2), 0.25, dtype=np.float32)
    out = apply_postprocess(probs, PostprocessSettings(thresholds=[0.0, 0.25, 0.2, 1.0, 0.3]))
    assert out.reshape(5, -1).all(axis=1).tolist() == [True, False, True, False, False]


def test_opening_removes_speck_keeps_block():
    channel = np.zeros((30, 30), dtype=np.float32)
    channel[10:20, 10:20] = 0.9  # 10x10 block
    channel[2:4, 25:27] = 0.9  # 2x2 speck
    channel[25, 2:12] = 0.9  # 1-px wide line
    out = apply_postprocess(_stack(channel, 2), PostprocessSettings(opening=[0, 0, 5, 0, 0]))
    expected = np.zeros((30, 30), dtype=bool)
    expected[10:20, 10:20] = True
    for r, c in [(10, 10), (10, 19), (19, 10), (19, 19)]:  # the 5-px disk cannot reach 3 px per corner
        dr, dc = (1 if r == 10 else -1), (1 if c == 10 else -1)
        expected[r, c] = expected[r + dr, c] = expected[r, c + dc] = False
    assert np.array_equal(out[2], expected) and out[2].sum() == 88
    assert not out[[0, 1, 3, 4]].any()
    # off: the speck stays
    out = apply_postprocess(_stack(channel, 2))
    assert out[2, 2:4, 25:27].all() and out[2].sum() == 100 + 4 + 10


def test_opening_disk_rounds_corners_and_keeps_border_objects():
    channel = np.zeros((12, 12), dtype=np.float32)
    channel[:10, :10] = 1.0  # touches the image border
    out = apply_postprocess(_stack(channel), PostprocessSettings(opening=[7, 0, 0, 0, 0]))
    # the border does not erode; only the inner corner is rounded off by the 7-px disk:
    # (9, 9), (9, 8), (8, 9), (9, 7), (7, 9)
    assert out[0, :10, :10].sum() == 100 - 5 and out[0, 0, 0] and out[0, 9, 0] and out[0, 8, 8]
    assert not out[0, 9, 9] and not out[0, 9, 7] and not out[0, 7, 9]
    assert not out[0, 10:].any() and not out[0, :, 10:].any()


def test_disk():
    assert disk(1).tolist() == [[1]]
    assert disk(3).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    d = disk(21)
    assert np.array_equal(d, d.T) and np.array_equal(d, d[::-1]) and d.sum() == 317
    with pytest.raises(ValueError):
        disk(4)


def test_min_area():
    channel = np.zeros((10, 10), dtype=np.float32)
    channel[0:3, 0:3] = 0.9  # 9 px
    channel[6:8, 6:8] = 0.9  # 4 px
    channel[5, 5] = 0.9  # touches the 4-px block diagonally: 8-connected -> one component of 5
    out = apply_postprocess(_stack(channel, 4), PostprocessSettings(min_area=[0, 0, 0, 0, 6]))
    assert out[4].sum() == 9 and out[4, 0:3, 0:3].all()
    out = apply_postprocess(_stack(channel, 4), PostprocessSettings(min_area=[0, 0, 0, 0, 5]))
    assert out[4].sum() == 14
    out = apply_postprocess(_stack(channel, 4), PostprocessSettings(min_area=[0, 0, 0, 0, 10]))
    assert not out[4].any()
    empty = np.zeros((4, 4), dtype=bool)
    assert remove_small_components(empty, 3) is empty


def test_presence_gate():
    channel = np.zeros((4, 4), dtype=np.float32)
    channel[1, 1] = 0.6
    probs = np.stack([channel] * 5)
    gates = [0.0, 0.6, 0.61, 1.0, 0.5]
    out = apply_postprocess(probs, PostprocessSettings(presence=gates))
    # kept when the maximum (0.6) is not below the gate
    assert [bool(out[k, 1, 1]) for k in range(5)] == [True, True, False, False, True]
    assert out.sum() == 3


def test_order_gate_uses_raw_probabilities_before_opening():
    channel = np.zeros((20, 20), dtype=np.float32)
    channel[3, 3] = 0.95  # a speck with the maximum probability
    channel[8:16, 8:16] = 0.7
    out = apply_postprocess(_stack(channel), PostprocessSettings(opening=3, presence=0.9))
    assert not out[0, 3, 3] and out[0, 8:16, 8:16].sum() > 50


def test_input_validation():
    with pytest.raises(ValueError, match=r"\(5, H, W\)"):
        apply_postprocess(np.zeros((4, 3, 3), dtype=np.float32), PostprocessSettings())
    with pytest.raises(ValueError, match=r"\(1, H, W\)"):
        apply_postprocess(np.zeros((5, 3, 3), dtype=np.float32), PostprocessSettings(thresholds=[0.5]))
    with pytest.raises(ValueError, match="float"):
        apply_postprocess(np.zeros((5, 3, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="logits"):
        apply_postprocess(np.full((5, 3, 3), 2.0, dtype=np.float32))
    assert apply_postprocess(torch.zeros(5, 3, 3)).shape == (5, 3, 3)  # CPU tensors work
    assert apply_postprocess(np.zeros((5, 0, 3), dtype=np.float32)).shape == (5, 0, 3)


def test_scale_kernel():
    assert scale_kernel(0, 256, 1024) == 0
    assert scale_kernel(15, 256, 256) == 15
    assert scale_kernel(15, 256, 1024) == 61  # 60 -> nearest odd (59 and 61 tie; rounds up)
    assert scale_kernel(5, THESIS_SIDE, 1000) == 19  # 19.53
    assert scale_kernel(21, 256, 64) == 5  # 5.25
    assert scale_kernel(5, 1024, 256) == 1  # never below 1
    assert all(scale_kernel(k, 256, s) % 2 == 1 for k in range(1, 40) for s in (100, 333, 767, 2000))
    with pytest.raises(ValueError):
        scale_kernel(5, 0, 256)
    with pytest.raises(ValueError):
        scale_kernel(-1, 256, 256)


def test_rescaled():
    s = PostprocessSettings(opening=THESIS_OPENING, min_area=[0, 4, 10, 0, 1], thresholds=0.4)
    r = s.rescaled(256, 512)
    assert (
        r.opening == (31, 43, 43, 31, 11) and r.min_area == (0, 16, 40, 0, 4) and r.thresholds == s.thresholds
    )
    assert s.rescaled(256, 32).min_area == (0, 1, 1, 0, 1)  # kept on
