"""A checkpoint written before the package was split into wings still loads and predicts the same.

The fixture was written by dermseg at commit "Merge fix12-b" (modules flat in ``src/dermseg``) from
a tiny two-epoch synthetic training run; ``pre_wings_expected.npz`` holds what that code predicted
for ``pre_wings_input.jpg``. Checkpoints store no module paths, so any later layout must load it
and give the same probabilities.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dermseg import Segmenter

FIXTURES = Path(__file__).parent / "fixtures"


def test_pre_wings_checkpoint_predicts_as_it_did() -> None:
    seg = Segmenter.from_checkpoint(FIXTURES / "pre_wings_checkpoint.safetensors")
    expected = np.load(FIXTURES / "pre_wings_expected.npz")
    # atol: float kernels may differ in the last bits across CPUs
    got = seg(FIXTURES / "pre_wings_input.jpg")
    np.testing.assert_allclose(got.probabilities, expected["probabilities"], atol=1e-5)
    np.testing.assert_array_equal(got.masks, expected["masks"])
