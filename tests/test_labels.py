"""Label sets: built-ins, file naming both ways, YAML files of users, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermseg.errors import ConfigError
from dermseg.labels import BUILTIN, LabelSet, load_label_set


def test_task2_set_is_the_five_official_attributes_in_official_order() -> None:
    ls = load_label_set("isic2018_task2")
    assert ls.names == ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks")
    assert ls.mask_name("ISIC_0000042", "streaks") == "ISIC_0000042_attribute_streaks.png"
    assert ls.metric == "isic2018_task2" and set(ls.encodings) == {"multilabel", "softmax"}


@pytest.mark.parametrize(
    ("name", "image_id", "file"),
    [
        ("isic2018_task1", "ISIC_0000007", "ISIC_0000007_segmentation.png"),
        ("ph2", "IMD003", "IMD003_lesion.png"),
    ],
)
def test_lesion_sets_name_their_one_mask(name: str, image_id: str, file: str) -> None:
    ls = load_label_set(name)
    assert ls.names == ("lesion",) and ls.metric == "isic2018_task1" and ls.encodings == ("multilabel",)
    assert ls.mask_name(image_id, "lesion") == file
    assert ls.parse_mask_name(file) == (image_id, "lesion")


def test_parse_mask_name_inverts_mask_name_and_rejects_other_files() -> None:
    ls = BUILTIN["isic2018_task2"]
    assert ls.parse_mask_name("ISIC_0012345_attribute_milia_like_cyst.png") == (
        "ISIC_0012345",
        "milia_like_cyst",
    )
    assert ls.parse_mask_name("ISIC_0012345_attribute_veil.png") is None  # not a label of the set
    assert ls.parse_mask_name("ISIC_0012345_segmentation.png") is None
    assert ls.parse_mask_name("ISIC_0012345_attribute_streaks.jpg") is None


def test_meta_round_trip_keeps_everything() -> None:
    for ls in BUILTIN.values():
        assert LabelSet.from_meta(ls.to_meta()) == ls


def test_user_yaml_label_set(tmp_path: Path) -> None:
    f = tmp_path / "veil.yaml"
    f.write_text(
        "name: veil_and_regression\n"
        "labels:\n"
        "  - {name: blue_whitish_veil, display_name: Blue-whitish veil, colour: [40, 90, 220]}\n"
        "  - regression\n"
        'mask_pattern: "{id}_{label}.png"\n'
        "metric: isic2018_task2\n"
    )
    ls = load_label_set(f)
    assert ls.names == ("blue_whitish_veil", "regression")
    assert ls.display_names == {"blue_whitish_veil": "Blue-whitish veil", "regression": "Regression"}
    assert ls.colours["blue_whitish_veil"] == (40, 90, 220)
    assert ls.mask_name("case_12", "regression") == "case_12_regression.png"
    assert ls.parse_mask_name("case_12_blue_whitish_veil.png") == ("case_12", "blue_whitish_veil")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("name: x\nlabels: [a, a]\nmask_pattern: '{id}_{label}.png'\n", "appears twice"),
        (
            "name: x\nlabels: [a, b]\nmask_pattern: '{id}_{label}.png'\nmetric: dice\n",
            "metric 'dice' is unknown",
        ),
        ("name: x\nlabels: [a, b]\nmask_pattern: '{id}.png'\n", "need {label}"),
        ("name: x\nlabels: [a]\nmask_pattern: 'm.png'\n", "must hold {id}"),
        ("name: x\nlabels: [a, b]\nmetric: isic2018_task1\n", "scores one label"),
        ("name: x\nlabels: [{name: a, colour: [1, 2]}]\n", "three integers"),
        ("name: x\nlabels: [{name: A b}]\n", "lower case"),
        ("name: x\nlabels: []\n", "non-empty list"),
        ("labels: [a]\n", "missing field 'name'"),
        ("name: x\nlabels: [a]\ncolor: red\n", "unknown field"),
        ("name: x\nbase: &b [a]\nlabels: *b\n", "anchors and aliases"),
        ("name: [\n", "not valid YAML"),
        ("- a\n- b\n", "is a mapping"),
    ],
)
def test_bad_label_set_files_are_one_line_errors_naming_the_file(
    tmp_path: Path, body: str, problem: str
) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_label_set(f)
    message = str(err.value)
    assert message.startswith(str(f)) and problem in message and "\n" not in message


def test_unknown_name_lists_the_built_in_sets() -> None:
    with pytest.raises(ConfigError, match="isic2018_task2, isic2018_task1, ph2"):
        load_label_set("isic2019")
