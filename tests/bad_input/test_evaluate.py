"""``dermseg evaluate --pred --gt`` with the corpus's mask folder as predictions, then as truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bad_input.corpus.base import MASKS, Case, Err, Ok
from tests.bad_input.harness import (
    assert_failed,
    assert_succeeded,
    build,
    expected_error_path,
    leftovers,
    params,
    run,
    subfolder,
    verify,
)


def _evaluate(capsys, tmp_path: Path, pred: Path, gt: Path, outcome: Ok | Err, offending: Path) -> None:
    scores, table = tmp_path / "scores.json", tmp_path / "scores.csv"
    result = run(capsys, "evaluate", "--pred", pred, "--gt", gt, "--json", scores, "--csv", table)
    if isinstance(outcome, Err):
        where = expected_error_path(outcome, offending, pred)
        assert_failed(result, where, outcome.words, one_line=False)
        assert not scores.exists() and not table.exists()
    else:
        assert_succeeded(result)
        assert 0.0 <= json.loads(scores.read_text())["overall"] <= 1.0
        assert table.read_text().splitlines()[0].startswith("attribute,")
        verify(outcome, pred, scores)
    assert not leftovers(tmp_path)


@pytest.mark.parametrize("case, outcome", params("evaluate_pred"))
def test_evaluate_predictions(
    case: Case, outcome: Ok | Err, base_dataset: Path, tmp_path: Path, capsys
) -> None:
    data, offending = build(case, base_dataset, tmp_path)
    pred = subfolder(data, MASKS)
    _evaluate(capsys, tmp_path, pred, base_dataset / MASKS, outcome, offending)


@pytest.mark.parametrize("case, outcome", params("evaluate_gt"))
def test_evaluate_ground_truth(
    case: Case, outcome: Ok | Err, base_dataset: Path, tmp_path: Path, capsys
) -> None:
    data, offending = build(case, base_dataset, tmp_path)
    gt = subfolder(data, MASKS)
    _evaluate(capsys, tmp_path, base_dataset / MASKS, gt, outcome, offending)
