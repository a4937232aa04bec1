"""Shared by the loss tests: hand-checkable constants and seeded random inputs."""

from __future__ import annotations

import math

import torch

LN2, LN6 = math.log(2.0), math.log(6.0)
G, M, N, P, S = range(5)


def rand(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def rand_masks(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.3).to(torch.uint8)
