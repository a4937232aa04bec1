"""An ensemble post-processes its averaged probabilities once: its members must agree on the
opening, small-component removal and presence gate, or it is refused with one line naming the
member that differs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.cli import main
from dermseg.errors import ConfigError, DataError
from dermseg.inference.ensemble import ensemble_segmenter
from tests.conftest import write_tiny_checkpoint


def _pair(tmp_path: Path, first: list[str], second: list[str]) -> tuple[Path, Path]:
    return (
        write_tiny_checkpoint(tmp_path / "fold0.safetensors", first),
        write_tiny_checkpoint(tmp_path / "fold1.safetensors", second),
    )


@pytest.mark.parametrize(
    ("setting", "first", "second", "words"),
    [
        (
            "postprocess.opening",
            "[5,0,0,0,0]",
            "[3,0,0,0,0]",
            "opening [3, 0, 0, 0, 0] here but [5, 0, 0, 0, 0]",
        ),
        (
            "postprocess.min_area",
            "[0,0,0,0,0]",
            "[0,9,0,0,0]",
            "(min_area) [0, 9, 0, 0, 0] here but [0, 0, 0, 0, 0]",
        ),
        (
            "postprocess.presence",
            "[0.2,0,0,0,0]",
            "[0,0,0,0,0]",
            "presence gate [0.0, 0.0, 0.0, 0.0, 0.0] here but",
        ),
    ],
)
def test_members_that_post_process_differently_are_refused(
    tmp_path: Path, setting: str, first: str, second: str, words: str
) -> None:
    a, b = _pair(tmp_path, [f"{setting}={first}"], [f"{setting}={second}"])
    with pytest.raises(DataError) as err:
        ensemble_segmenter([a, b])
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(b)) and words in message
    assert message.endswith("in fold0.safetensors")


def test_the_cli_says_which_member_differs_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = _pair(tmp_path, ["postprocess.opening=[5,0,0,0,0]"], [])
    image = tmp_path / "ISIC_0000001.jpg"
    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(image)
    code = main(
        [
            "predict",
            str(image),
            "--out",
            str(tmp_path / "out"),
            "--checkpoint",
            str(a),
            "--checkpoint",
            str(b),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "fold1.safetensors" in err[0] and "opening [0, 0, 0, 0, 0] here but [5, 0, 0, 0, 0]" in err[0]
    assert "Traceback" not in err[0] and not list(tmp_path.glob("out/*.png"))  # nothing predicted


def test_members_that_agree_share_their_post_processing_and_average_thresholds(tmp_path: Path) -> None:
    shared = ["postprocess.opening=[5,0,0,0,3]", "postprocess.presence=[0.1,0,0,0,0]"]
    a, b = _pair(
        tmp_path,
        [*shared, "postprocess.thresholds=[0.3,0.5,0.5,0.5,0.5]"],
        [*shared, "postprocess.thresholds=[0.5,0.5,0.5,0.5,0.7]"],
    )
    ensemble = ensemble_segmenter([a, b])
    assert list(ensemble.postprocess.opening) == [5, 0, 0, 0, 3]
    assert list(ensemble.postprocess.presence) == [0.1, 0, 0, 0, 0]
    np.testing.assert_allclose(ensemble.postprocess.thresholds, [0.4, 0.5, 0.5, 0.5, 0.6])


def test_members_needing_other_inputs_are_refused_saying_what_differs(tmp_path: Path) -> None:
    # resnet18 expects ImageNet statistics, tf_efficientnet_lite0 inputs in [-1, 1]
    a, b = _pair(tmp_path, [], ["model.encoder_name=tf_efficientnet_lite0"])
    with pytest.raises(ConfigError) as err:
        ensemble_segmenter([a, b])
    assert "normalisation mean [0.5, 0.5, 0.5] here but [0.485, 0.456, 0.406] in fold0.safetensors" in str(
        err.value
    )
