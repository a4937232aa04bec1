"""What the shipped recipes promise in their comments."""

from __future__ import annotations

from dermseg.config import load_config, resolve_config_path


def test_the_isic2018_recipe_uses_the_tricks() -> None:
    # what the shipped recipe promises in its comments: >= 512 px crops and each trick switched on
    cfg = load_config(resolve_config_path("isic2018"))
    assert cfg.data.crop_size >= 512 and cfg.data.size >= cfg.data.crop_size
    assert cfg.model.presence_head and cfg.loss.presence_weight > 0
    assert cfg.data.balance > 0 and cfg.augment.lesion_crop > 0 and cfg.predict.tta
    assert cfg.data.validation == "holdout" and cfg.data.folds == 1  # one model is the headline
