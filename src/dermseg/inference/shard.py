"""Splitting a folder's images between processes: ``--shard i/N`` job arrays and ``torchrun`` ranks.

The split is a function of the image list alone, so processes that never talk to each other
agree on it: the images sorted by name (their ids, unique within a run), and shard ``i`` of
``N`` takes every ``N``-th one starting at the ``i``-th (0-based). The shards of ``N`` are
disjoint and together hold every image exactly once, and each gets ``len // N`` or one more.
Under ``torchrun`` (``WORLD_SIZE`` and ``RANK`` set) each rank takes its share of its shard
the same way; no process group is needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dermseg.errors import ConfigError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (0-based) of ``count`` equal parts of a sorted image list.

    Raises:
        ConfigError: ``count < 1`` or ``index`` not in ``[0, count)``.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index}/{self.count}: need 0 <= i < N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/N"`` (as ``--shard`` gives it) as a :class:`Shard`.

        Raises:
            ConfigError: not of the form ``i/N`` with ``0 <= i < N``.
        """
        m = _SHARD.match(text)
        if m is None:
            raise ConfigError(f"--shard must be i/N with 0 <= i < N (e.g. 0/4), got {text!r}")
        index, count = int(m.group(1)), int(m.group(2))
        if count < 1 or index >= count:
            raise ConfigError(f"--shard must be i/N with 0 <= i < N (e.g. 0/4), got {text!r}")
        return cls(index, count)

    @classmethod
    def of_rank(cls, environ: Mapping[str, str]) -> Shard:
        """This process's part under ``torchrun``: ``RANK`` of ``WORLD_SIZE`` (``0/1`` without them).

        Raises:
            ConfigError: the variables are not integers with ``0 <= RANK < WORLD_SIZE``.
        """
        world, rank = environ.get("WORLD_SIZE"), environ.get("RANK")
        if world is None and rank is None:
            return cls()
        if world is None or rank is None:  # each process would take itself for rank 0: all predict all
            raise ConfigError(
                f"RANK={rank!r} and WORLD_SIZE={world!r}: torchrun sets both; set both or neither"
            )
        try:
            return cls(int(rank), int(world))
        except (ValueError, ConfigError):
            raise ConfigError(
                f"RANK={rank!r} and WORLD_SIZE={world!r} (set by torchrun) must be integers with "
                "0 <= RANK < WORLD_SIZE"
            ) from None

    def select(self, images: Sequence[Path]) -> list[Path]:
        """This part of ``images``, in name order: every ``count``-th image from the ``index``-th."""
        ordered = sorted(images, key=lambda p: (p.stem, str(p)))
        return ordered[self.index :: self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def rank_device(device: str, environ: Mapping[str, str]) -> str:
    """``cuda`` as ``cuda:<LOCAL_RANK>`` under ``torchrun`` (one GPU per rank); any other device as given."""
    local = environ.get("LOCAL_RANK")
    if device == "cuda" and local is not None and local.isdigit():
        return f"cuda:{local}"
    return device
