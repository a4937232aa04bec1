"""The synthetic-mix fields of a run config (``data.synthetic_*``) and the rules between them."""

from __future__ import annotations

import pytest

from dermseg.config import ConfigValueError, load_config, resolve_config_path, synthetic_per_batch


def test_the_mix_is_off_by_default_and_in_the_isic2018_recipe() -> None:
    cfg = load_config(None)
    assert cfg.data.synthetic_mix == 0.0 and not cfg.data.synthetic_rare_only
    assert cfg.data.synthetic_size is None
    recipe = load_config(resolve_config_path("isic2018"))
    assert recipe.data.synthetic_mix == 0.0  # listed, off: untested on real data
    assert "synthetic_mix" in resolve_config_path("isic2018").read_text()


@pytest.mark.parametrize(
    ("mix", "batch", "expected"),
    [(0.0, 8, 0), (0.25, 8, 2), (0.5, 3, 2), (0.1, 4, 0), (0.7, 5, 4), (0.3, 5, 2), (0.99, 8, 8)],
)
def test_synthetic_per_batch_rounds_half_up(mix: float, batch: int, expected: int) -> None:
    assert synthetic_per_batch(mix, batch) == expected


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.synthetic_mix=0.5"],
        ["data.synthetic_mix=0.25", "train.batch_size=8", "data.synthetic_rare_only=true"],
        ["data.synthetic_mix=0.5", "data.synthetic_size=256"],
        ["data.labels=ph2", "data.synthetic_rare_only=true"],  # unused at mix 0: not refused
    ],
)
def test_good_mix_configs(overrides: list[str]) -> None:
    load_config(None, overrides)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["data.synthetic_mix=0.5", "data.labels=ph2"], "label set ph2 has other labels"),
        (["data.synthetic_mix=0.5", "data.labels=isic2018_task1"], "set data.synthetic_mix: 0"),
        (["data.synthetic_mix=0.1", "train.batch_size=4"], "makes 0 synthetic images per batch"),
        (["data.synthetic_mix=0.95", "train.batch_size=8"], "makes 8 synthetic images per batch"),
        (["data.synthetic_mix=0.5", "train.batch_size=1"], "needs train.batch_size >= 2"),
        (["data.synthetic_mix=1"], "data.synthetic_mix must be a fraction of the batch in [0, 1)"),
        (["data.synthetic_mix=-0.1"], "data.synthetic_mix must be"),
        (["data.synthetic_size=16"], "data.synthetic_size must be >= 32"),
        (["data.synthetic_rare_only=maybe"], "expected true or false"),
    ],
)
def test_bad_mix_configs_are_one_line(overrides: list[str], words: str) -> None:
    with pytest.raises(ConfigValueError) as err:
        load_config(None, overrides)
    assert words in str(err.value) and "\n" not in str(err.value)
