"""``dermseg predict`` on every malformed image folder of the corpus.

A bad image is reported and the others are written (exit code 2 at the end); an unusable
argument (a missing or empty folder) is one error line and writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from dermseg.data.imageio import image_size, is_image_file
from dermseg.inference.run_manifest import MANIFEST_NAME
from tests.bad_input.corpus.base import GOOD, IMAGES, Case, Err, Ok
from tests.bad_input.harness import (
    assert_failed,
    assert_succeeded,
    build,
    leftovers,
    mask_names,
    params,
    run,
    subfolder,
)


def _inputs(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if is_image_file(p) and not p.name.startswith(".")]


@pytest.mark.parametrize("case, outcome", params("predict"))
def test_predict(
    case: Case, outcome: Ok | Err, base_dataset: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    data, offending = build(case, base_dataset, tmp_path)
    images = subfolder(data, IMAGES)
    out = tmp_path / "masks"
    result = run(capsys, "predict", images, "--checkpoint", tiny_checkpoint, "--out", out)
    if isinstance(outcome, Err):
        per_image = "image(s) failed" in result.err
        assert_failed(result, offending, outcome.words, one_line=not per_image)
        if per_image:  # the others are written, complete
            assert set(os.listdir(out)) == {*mask_names(() if case.whole else GOOD), MANIFEST_NAME}
        else:
            assert not out.exists()
    else:
        assert_succeeded(result)
        inputs = _inputs(images)
        assert set(os.listdir(out)) == {*mask_names([p.stem for p in inputs]), MANIFEST_NAME}
        for path in inputs:  # every mask 0/255 at the image's displayed size (EXIF applied)
            for name in ATTRIBUTES:
                with Image.open(out / f"{path.stem}_attribute_{name}.png") as mask:
                    assert mask.size == image_size(path) and mask.mode == "L", (path, mask.size)
                    assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 255}
    assert not leftovers(tmp_path)
