"""``dermseg prepare`` on every malformed dataset of the corpus: a cache is complete or not there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dermseg.data.cache import open_cache
from dermseg.data.layout import discover
from tests.bad_input.corpus import case_named
from tests.bad_input.corpus.base import Case, Err, Ok, image_path
from tests.bad_input.corpus.images import image_truncated_jpeg
from tests.bad_input.harness import assert_failed, assert_succeeded, build, leftovers, params, run, verify


def _prepare(capsys, data: Path, cache: Path, workers: int = 1):
    return run(capsys, "prepare", data, "--size", 64, "--out", cache, "--workers", workers)


@pytest.mark.parametrize("case, outcome", params("prepare"))
def test_prepare(case: Case, outcome: Ok | Err, base_dataset: Path, tmp_path: Path, capsys) -> None:
    data, offending = build(case, base_dataset, tmp_path)
    cache = tmp_path / "cache"
    result = _prepare(capsys, data, cache)
    if isinstance(outcome, Err):
        assert_failed(result, offending, outcome.words, one_line=True)
        assert not cache.exists()  # created by this call: removed again, nothing half-written in it
    else:
        assert_succeeded(result)
        manifest = open_cache(cache, data)  # complete and up to date
        assert len(manifest.samples) == len(discover(data).samples)
        verify(outcome, data, cache)
    assert not leftovers(tmp_path)


def test_error_in_a_worker_process_is_one_line(base_dataset: Path, tmp_path: Path, capsys) -> None:
    data, offending = build(case_named("image_zero_bytes"), base_dataset, tmp_path)
    result = _prepare(capsys, data, tmp_path / "cache", workers=2)
    assert_failed(result, offending, ("empty file",), one_line=True)
    assert not (tmp_path / "cache").exists()


def test_a_failed_update_keeps_the_previous_cache(base_dataset: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    shutil.copytree(base_dataset, data)
    cache = tmp_path / "cache"
    assert _prepare(capsys, data, cache).code == 0
    before = sorted(p.name for p in cache.iterdir())
    image_truncated_jpeg(data)
    assert_failed(_prepare(capsys, data, cache), image_path(data), ("truncated",), one_line=True)
    assert sorted(p.name for p in cache.iterdir()) == before
    open_cache(cache)  # still a valid cache (of the data as it was: stale now, and said so on use)


def test_a_bad_file_in_a_later_split_leaves_no_data_of_the_earlier_ones(
    base_dataset: Path, tmp_path: Path, capsys
) -> None:
    data = tmp_path / "data"
    shutil.copytree(base_dataset, data)
    bad = data / "ISIC2018_Task1-2_Validation_Input" / "ISIC_0000003.jpg"
    bad.write_bytes(b"")
    cache = tmp_path / "cache"
    assert_failed(_prepare(capsys, data, cache), bad, ("empty file",), one_line=True)
    assert not cache.exists()  # the training split's data files went with it
