"""Model tests run on a shared 2-core CPU: few threads, small inputs, each model built once."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from dermseg.models import UNetASPP

# The encoders the project supports explicitly (the thesis's inception_v3 first).
ENCODERS = ["inception_v3", "resnet101", "resnet34", "efficientnet_b0", "tf_efficientnet_lite0"]


@pytest.fixture(autouse=True)
def _small_and_deterministic() -> Iterator[None]:
    # One thread: on a shared 2-core machine, two OpenMP threads next to another busy process
    # spin against each other and made this suite 10x slower (220 s against 20 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def unet_aspp() -> Callable[[str], UNetASPP]:
    """Build randomly initialised UNetASPP models, once per encoder name (resnet101 is slow to build)."""
    cache: dict[str, UNetASPP] = {}

    def build(name: str) -> UNetASPP:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = UNetASPP(encoder_name=name, encoder_weights="none")
        return cache[name]

    return build
