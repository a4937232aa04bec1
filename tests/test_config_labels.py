"""``data.labels`` in run configs: post-processing lists one per label, encodings the set
allows, one-line errors naming the config file or the ``--set`` argument."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermseg.config import load_config, resolve_config_path
from dermseg.errors import ConfigError


def test_task2_stays_the_default_with_five_values_per_list() -> None:
    cfg = load_config(None)
    assert cfg.data.labels == "isic2018_task2"
    assert cfg.postprocess.thresholds == [0.5] * 5 and cfg.postprocess.opening == [0] * 5
    assert cfg.postprocess.min_area == [0] * 5 and cfg.postprocess.presence == [0.0] * 5
    assert cfg.augment.rotate == 0 and cfg.augment.scale == 0  # off: Task 2 training unchanged


def test_lists_not_given_have_one_value_per_label() -> None:
    cfg = load_config(None, ["data.labels=ph2"])
    assert cfg.postprocess.thresholds == [0.5] and cfg.postprocess.opening == [0]
    assert cfg.postprocess.min_area == [0] and cfg.postprocess.presence == [0.0]
    cfg = load_config(None, ["data.labels=isic2018_task1", "postprocess.thresholds=[0.4]"])
    assert cfg.postprocess.thresholds == [0.4] and cfg.postprocess.opening == [0]


def test_the_lesion_recipe() -> None:
    cfg = load_config(resolve_config_path("lesion"))
    assert cfg.data.labels == "ph2" and cfg.data.validation == "holdout"
    assert cfg.model.encoding == "multilabel" and cfg.loss.terms == {"bce": 1.0, "soft_jaccard": 1.0}
    assert 256 <= cfg.data.crop_size <= cfg.data.size <= 384
    assert cfg.augment.hflip and cfg.augment.vflip and cfg.augment.rotate90
    assert cfg.augment.rotate > 0 and 0 < cfg.augment.scale < 1 and cfg.augment.color_jitter > 0
    assert cfg.model.encoder_name == "tf_efficientnet_lite0" and cfg.model.encoder_weights == "imagenet"
    assert cfg.train.max_minutes is not None and cfg.train.max_minutes <= 30
    assert cfg.postprocess.thresholds == [0.5]
    assert load_config(resolve_config_path("lesion"), ["data.labels=isic2018_task1"]).data.labels


def test_a_list_of_another_length_is_refused_naming_the_config(tmp_path: Path) -> None:
    demo = resolve_config_path("demo")  # five thresholds, written out
    with pytest.raises(ConfigError) as err:
        load_config(demo, ["data.labels=ph2"])
    assert err.value.path == demo
    assert "postprocess.thresholds needs 1 value(s), one per label of ph2" in str(err.value)
    with pytest.raises(ConfigError, match="postprocess.opening needs 5 value"):
        load_config(None, ["postprocess.opening=[0]"])


def test_an_encoding_the_set_does_not_allow_is_refused() -> None:
    seed = resolve_config_path("seed")  # multiclass
    with pytest.raises(ConfigError) as err:
        load_config(seed, ["data.labels=ph2"])
    assert err.value.path == seed
    assert "model.encoding multiclass does not fit label set ph2 (it allows multilabel)" in str(err.value)


def test_a_presence_head_needs_the_five_attributes() -> None:
    with pytest.raises(ConfigError, match="model.presence_head needs 5 labels; label set ph2 has 1"):
        load_config(None, ["data.labels=ph2", "model.presence_head=true"])


def test_an_unknown_set_names_the_set_argument() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(resolve_config_path("demo"), ["data.labels=ph3"])
    message = str(err.value)
    assert err.value.path is None and len(message.splitlines()) == 1
    assert message.startswith("--set data.labels=ph3: label set 'ph3' is neither built in")


def test_an_unknown_set_in_a_config_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  labels: ph3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.path == path and "data.labels: label set 'ph3'" in str(err.value)


def test_a_bad_label_set_file_names_both_files(tmp_path: Path) -> None:
    labels = tmp_path / "mine.yaml"
    labels.write_text("name: mine\nlabels: [a, a]\n")
    path = tmp_path / "run.yaml"
    path.write_text(f"data:\n  labels: {labels}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert err.value.path == path and len(message.splitlines()) == 1
    assert str(labels) in message and "appears twice" in message


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("augment.rotate=-1", "augment.rotate must be between 0 and 180"),
        ("augment.rotate=181", "augment.rotate must be between 0 and 180"),
        ("augment.scale=1", r"augment.scale must be in \[0, 1\)"),
        ("augment.scale=-0.1", r"augment.scale must be in \[0, 1\)"),
    ],
)
def test_rotate_and_scale_ranges(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])
