"""Building a run from its config (``dermseg.training.setup``)."""

from __future__ import annotations

import pytest

from dermseg.config import load_config
from dermseg.errors import ConfigError
from dermseg.training.setup import model_kwargs
from tests.conftest import QUICK_TRAIN


def test_presence_head_is_refused_on_smp_models() -> None:
    with pytest.raises(ConfigError, match="unet_aspp only"):
        model_kwargs(load_config(None, [*QUICK_TRAIN, "model.arch=smp_unet", "model.presence_head=true"]))
