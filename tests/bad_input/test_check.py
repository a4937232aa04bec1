"""``dermseg check`` on every malformed dataset of the corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dermseg.data.check import check_headers
from dermseg.data.layout import discover
from dermseg.errors import DataError, display_path
from tests.bad_input.corpus import case_named
from tests.bad_input.corpus.base import Case, Err, Ok
from tests.bad_input.harness import assert_failed, assert_succeeded, build, leftovers, params, run, verify


@pytest.mark.parametrize("case, outcome", params("check"))
def test_check(case: Case, outcome: Ok | Err, base_dataset: Path, tmp_path: Path, capsys) -> None:
    data, offending = build(case, base_dataset, tmp_path)
    summary = tmp_path / "reports" / "summary.json"
    result = run(capsys, "check", data, "--json", summary, "--workers", 1)
    if isinstance(outcome, Err):
        assert_failed(result, offending, outcome.words, one_line=False)
        if summary.exists():  # the report of a dataset that could be listed: complete, with the problem
            problems = json.loads(summary.read_text())["problems"]
            assert any(display_path(offending) == display_path(p["path"]) for p in problems), problems
    else:
        assert_succeeded(result)
        assert json.loads(summary.read_text())["problems"] == []
        verify(outcome, data, summary)
    assert not leftovers(tmp_path)


#: corpus case -> what check_headers finds from the headers alone (None: nothing to find there)
HEADER_CASES = {
    "image_zero_bytes": "empty file",
    "image_garbage": "not a readable image",
    "image_bomb": "image too large",
    "image_exif_masks_unrotated": "mask is 64x48 but its image is 48x64",
    "mask_zero_bytes": "empty file",
    "mask_wrong_size": "mask is 10x10 but its image is 64x64",
    "mask_16bit": "16/32-bit",
    "mask_bomb": "image too large",
    "image_exif_rotated": None,
    "image_cmyk": None,
    "mask_palette": None,
    "image_truncated_jpeg": None,  # the header is intact: found only by decoding
}


@pytest.mark.parametrize("name, words", HEADER_CASES.items(), ids=list(HEADER_CASES))
def test_check_headers(name: str, words: str | None, base_dataset: Path, tmp_path: Path) -> None:
    """The quick look a command can take before it writes anything (see train)."""
    data, offending = build(case_named(name), base_dataset, tmp_path)
    samples = discover(data).samples
    if words is None:
        check_headers(samples, workers=2)
        return
    with pytest.raises(DataError) as info:
        check_headers(samples, workers=2)
    assert info.value.path == offending and words in info.value.message, info.value
