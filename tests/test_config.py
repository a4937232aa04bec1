from __future__ import annotations

from pathlib import Path

import pytest

from dermseg.config import BUILTIN_CONFIGS, load_config, parse_overrides, resolve_config_path
from dermseg.errors import ConfigError


@pytest.mark.parametrize("name", BUILTIN_CONFIGS)
def test_shipped_configs_load_and_pin_the_thesis_aspp_rates(name: str) -> None:
    cfg = load_config(resolve_config_path(name))
    assert cfg.model.aspp_rates == [2, 3, 4]


def test_seed_config_is_the_thesis_setup() -> None:
    cfg = load_config(resolve_config_path("seed"))
    assert cfg.model.encoder_name == "inception_v3" and cfg.model.encoding == "multiclass"
    assert cfg.data.crop_size == 128 and cfg.loss.class_weights == "inverse_frequency"
    assert cfg.loss.terms == {"ce": 1.0} and cfg.train.encoder_lr_mult == 0.01
    # opening kernels: cysts 21, negative network 21, pigment network 15, streaks 5, globules 15
    assert cfg.postprocess.opening == [15, 21, 21, 15, 5]


def test_overrides_are_parsed_as_yaml() -> None:
    assert parse_overrides(["train.lr=0.5", "model.aspp_rates=[1, 2]", "data.limit=null"]) == {
        "train": {"lr": 0.5},
        "model": {"aspp_rates": [1, 2]},
        "data": {"limit": None},
    }
    assert load_config(None, ["train.lr=1e-4"]).train.lr == 1e-4  # YAML 1.1 reads 1e-4 as a string
    cfg = load_config(resolve_config_path("demo"), ["train.epochs=3", "loss.terms={focal: 2.0}"])
    assert cfg.train.epochs == 3 and cfg.loss.terms == {"focal": 2.0}
    assert cfg.model.encoder_name == "tf_efficientnet_lite0"  # the rest of the file is kept


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  lrate: 0.1\n", "unknown key train.lrate"),
        ("train:\n  epochs: ten\n", "train.epochs: expected an integer"),
        ("model:\n  aspp_rates: 3\n", "model.aspp_rates: expected a list"),
        ("data: [1, 2]\n", "data: expected a mapping"),
        ("- just\n- a list\n", "must be a mapping"),
        ("train: {epochs: 2\n", "invalid YAML"),
        ("data:\n  crop_size: 600\n  size: 512\n", "crop_size"),
        ("train:\n  amp: fp8\n", "train.amp"),
    ],
)
def test_bad_config_files_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_missing_and_bad_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.lr"])


def test_presence_head_is_refused_on_smp_models() -> None:
    from tests.conftest import QUICK_TRAIN

    with pytest.raises(ConfigError, match="unet_aspp only, not smp_unet"):
        load_config(None, [*QUICK_TRAIN, "model.arch=smp_unet", "model.presence_head=true"])
