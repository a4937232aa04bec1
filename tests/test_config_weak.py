"""The weak-label fields of a run config (``data.weak_*``, ``loss.weak_*``) and the rules between them."""

from __future__ import annotations

import pytest

from dermseg.config import ConfigValueError, load_config

WEAK = "data.weak_labels=labels.csv"


def test_weak_labels_are_off_by_default() -> None:
    cfg = load_config(None)
    assert cfg.data.weak_labels is None and cfg.data.weak_format == "auto" and cfg.data.weak_images is None
    assert cfg.loss.weak_mil == "none" and cfg.loss.weak_topk == 0.02 and cfg.loss.weak_mil_weight == 1.0


@pytest.mark.parametrize(
    "overrides",
    [
        [WEAK, "model.presence_head=true"],
        [WEAK, "loss.weak_mil=topk", "loss.weak_topk=1"],
        [WEAK, "loss.weak_mil=max", "data.weak_format=derm7pt", "data.weak_images=derm7pt"],
        [WEAK, "model.presence_head=true", "model.encoding=multiclass", "loss.terms={ce: 1.0}"],
    ],
)
def test_good_weak_configs(overrides: list[str]) -> None:
    load_config(None, overrides)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ([WEAK], "set model.presence_head: true or loss.weak_mil"),  # nothing would learn from them
        (["data.weak_images=images"], "set data.weak_labels too"),
        (
            ["loss.weak_mil=max", "model.encoding=multiclass", "loss.terms={ce: 1.0}"],
            "needs model.encoding multilabel",
        ),
        ([WEAK, "loss.weak_mil=max", "data.labels=ph2"], "labels the Task 2 attributes"),
        (["loss.weak_topk=1.5"], "loss.weak_topk must be a fraction in (0, 1]"),
        (["data.weak_format=xlsx"], "data.weak_format must be auto, ph2, derm7pt or csv"),
    ],
)
def test_bad_weak_configs_are_one_line(overrides: list[str], words: str) -> None:
    with pytest.raises(ConfigValueError) as err:
        load_config(None, overrides)
    assert words in str(err.value) and "\n" not in str(err.value)
