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


def test_every_field_has_a_rule_and_the_loss_names_are_the_losses() -> None:
    from dermseg.config import FIELD_RULES, LOSS_TERMS, config_fields
    from dermseg.losses import TERMS

    assert list(FIELD_RULES) == list(config_fields())
    assert {name: term.encodings for name, term in TERMS.items() if not term.takes_weak} == LOSS_TERMS


@pytest.mark.parametrize(
    ("overrides", "source"),
    [
        (["train.lr=0"], "--set train.lr=0"),  # the value came from --set: the file is not blamed
        (["train.lr=0.1", "train.lr.x=2"], "--set train.lr.x=2"),  # a later --set replaces lr
        (["train={lr: 0}"], "--set train={lr: 0}"),  # a whole section
        (["data.size=64"], "file"),  # crop_size (from the file) no longer fits: the file's value
        (["train.epochs=2"], None),  # not an error
    ],
)
def test_an_error_names_where_the_value_came_from(overrides: list[str], source: str | None) -> None:
    demo = resolve_config_path("demo")
    if source is None:
        assert load_config(demo, overrides).train.epochs == 2
        return
    with pytest.raises(ConfigError) as err:
        load_config(demo, overrides)
    if source == "file":
        assert err.value.path == demo and "data.crop_size must be in 1..data.size (64)" in str(err.value)
    else:
        assert err.value.path is None and str(err.value).startswith(f"{source}: ")


def test_no_limit_is_null_not_zero() -> None:
    cfg = load_config(None, ["data.limit=null", "train.max_steps_per_epoch=null", "train.max_minutes=null"])
    assert cfg.data.limit is None and cfg.train.max_steps_per_epoch is None and cfg.train.max_minutes is None
    for item in ("data.limit=0", "train.max_steps_per_epoch=0"):
        with pytest.raises(ConfigError, match="or null for"):
            load_config(None, [item])


def test_a_huge_value_is_echoed_short(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: [" + ", ".join(["[1, 2, 3]"] * 50_000) + "]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "train.lr: expected a number, got [[1, 2, 3]" in str(err.value) and len(str(err.value)) < 200
