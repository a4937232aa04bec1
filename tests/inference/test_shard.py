"""Splitting the images between processes (inference/shard.py): ``--shard i/N`` and torchrun ranks."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermseg.errors import ConfigError
from dermseg.inference.shard import Shard, rank_device

IMAGES = [Path(f"/in/{name}.jpg") for name in ("c", "a", "e", "b", "d", "g", "f")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0/1", Shard(0, 1)), ("2/4", Shard(2, 4)), (" 3 / 4 ", Shard(3, 4))],
)
def test_shard_text_is_read(text: str, expected: Shard) -> None:
    assert Shard.parse(text) == expected


@pytest.mark.parametrize("text", ["4/4", "1/0", "-1/3", "1", "a/b", "1/2/3", ""])
def test_a_bad_shard_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(ConfigError, match="--shard must be i/N") as err:
        Shard.parse(text)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("index", "count", "names"),
    [
        (0, 1, "abcdefg"),
        (0, 2, "aceg"),
        (1, 2, "bdf"),
        (0, 3, "adg"),
        (1, 3, "be"),
        (2, 3, "cf"),
        (6, 7, "g"),
        (7, 8, ""),  # more shards than images: an empty part
    ],
)
def test_a_shard_takes_every_nth_image_in_name_order(index: int, count: int, names: str) -> None:
    assert [p.stem for p in Shard(index, count).select(IMAGES)] == list(names)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 10])
def test_the_shards_together_hold_every_image_exactly_once(count: int) -> None:
    parts = [Shard(i, count).select(IMAGES) for i in range(count)]
    together = [p for part in parts for p in part]
    assert sorted(together) == sorted(IMAGES) and len(together) == len(IMAGES)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # the order the images were given in does not matter
    assert [Shard(i, count).select(IMAGES[::-1]) for i in range(count)] == parts


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Shard(0, 1)),
        ({"WORLD_SIZE": "4", "RANK": "3"}, Shard(3, 4)),
        ({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}, Shard(0, 1)),
    ],
)
def test_a_torchrun_rank_is_read_from_its_environment(environ: dict[str, str], expected: Shard) -> None:
    assert Shard.of_rank(environ) == expected


@pytest.mark.parametrize("environ", [{"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "x", "RANK": "0"}])
def test_an_impossible_rank_is_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="0 <= RANK < WORLD_SIZE"):
        Shard.of_rank(environ)


@pytest.mark.parametrize("environ", [{"WORLD_SIZE": "4"}, {"RANK": "1"}])
def test_half_a_torchrun_environment_is_refused(environ: dict[str, str]) -> None:
    # WORLD_SIZE alone would make every process rank 0: each would predict every image
    with pytest.raises(ConfigError, match="set both or neither"):
        Shard.of_rank(environ)


def test_each_rank_on_cuda_takes_its_own_gpu() -> None:
    assert rank_device("cuda", {"LOCAL_RANK": "3"}) == "cuda:3"
    assert rank_device("cuda", {}) == "cuda"
    assert rank_device("cpu", {"LOCAL_RANK": "3"}) == "cpu"
    assert rank_device("cuda:1", {"LOCAL_RANK": "3"}) == "cuda:1"  # a device the user chose
