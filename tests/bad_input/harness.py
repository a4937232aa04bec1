"""Running a corpus case through a command and checking the outcome the issue asks for.

For every error: exit code 2, no traceback, every line on stderr an error line
(``dermseg: error: <path>: <problem>``) or a count of them, one of them naming the offending
file and the problem; commands that stop at the first error print exactly one line. No
partial output: the command's output location holds nothing of this run but what it writes
by design (predict: the masks of the good images), and no temporary file is left anywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dermseg.attributes import ATTRIBUTES
from dermseg.cli import main
from dermseg.errors import display_path
from tests.bad_input.corpus import CASES
from tests.bad_input.corpus.base import Case, Err, Ok

PREFIX = "dermseg: error: "
_COUNT_LINE = re.compile(r"^\d+ (problem\(s\)|of \d+ image\(s\) failed)")
_ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


@dataclass
class Result:
    """What a CLI call returned and printed."""

    args: list[str]
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def __str__(self) -> str:
        return f"dermseg {' '.join(self.args)} -> {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run(capsys: pytest.CaptureFixture[str], *args: Any) -> Result:
    """``dermseg ARGS`` in this process (paths passed as they are, odd bytes included)."""
    argv = [os.fspath(a) if isinstance(a, Path) else str(a) for a in args]
    capsys.readouterr()
    code = main(argv)
    cap = capsys.readouterr()
    return Result(argv, code, cap.out, cap.err)


def params(command: str) -> list[Any]:
    """``pytest.param(case, outcome)`` for every case that ``command`` is run on."""
    out = []
    for case in CASES:
        outcome = case.expect.get(command)
        if outcome is None:
            continue
        marks = []
        if case.needs_user:
            marks.append(
                pytest.mark.skipif(
                    _ROOT, reason="running as root, which reads a chmod 000 file: cannot make it unreadable"
                )
            )
        if isinstance(outcome, Err) and outcome.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=outcome.xfail))
        out.append(pytest.param(case, outcome, id=case.name, marks=marks))
    return out


def build(case: Case, base: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the base dataset with the case applied: ``(dataset argument, offending path)``."""
    root = tmp_path / "data"
    shutil.copytree(base, root)
    offending = case.build(root)
    return (offending if case.whole else root), offending


def subfolder(data: Path, name: str) -> Path:
    """``data/name`` when the dataset argument is a dataset; else the argument itself."""
    return data / name if (data / name).is_dir() else data


def leftovers(folder: Path) -> list[str]:
    """Temporary files of interrupted atomic writes anywhere under ``folder``."""
    found = []
    for parent, _dirs, files in os.walk(folder):
        found += [os.path.join(parent, f) for f in files if ".tmp" in f]
    return found


def _shown(path: Path) -> set[str]:
    """How a message may show ``path``: as given, or with its folder resolved."""
    forms = {display_path(path)}
    forms.add(display_path(Path(os.path.realpath(path.parent)) / path.name))
    return forms


def assert_failed(result: Result, path: Path | None, words: tuple[str, ...], *, one_line: bool) -> None:
    """Exit 2, no traceback, error lines only, one of them ``<path>: <problem with words>``."""
    assert result.code == 2, result
    assert "Traceback" not in result.out + result.err, result
    lines = result.err_lines
    assert lines, result
    if one_line:
        assert len(lines) == 1 and lines[0].startswith(PREFIX), result
    else:
        assert all(line.startswith(PREFIX) or _COUNT_LINE.match(line) for line in lines), result
    starts = {PREFIX + f"{p}: " for p in _shown(path)} if path is not None else {PREFIX}
    hits = [
        line for line in lines if any(line.startswith(s) for s in starts) and all(w in line for w in words)
    ]
    assert hits, f"no line naming {path} with {words}\n{result}"


def assert_succeeded(result: Result) -> None:
    assert result.code == 0, result
    assert "Traceback" not in result.out + result.err and PREFIX not in result.err, result


def expected_error_path(outcome: Err, offending: Path, pred_dir: Path | None = None) -> Path:
    if outcome.in_pred is not None:
        assert pred_dir is not None
        return pred_dir / outcome.in_pred
    return offending


def mask_names(stems: list[str] | tuple[str, ...]) -> set[str]:
    """The submission masks ``predict`` writes for these image stems."""
    return {f"{stem}_attribute_{a}.png" for stem in stems for a in ATTRIBUTES}


@dataclass
class Ctx:
    """What an ``Ok(verify)`` gets: the dataset argument and the command's output."""

    data: Path
    out: Path

    def json(self) -> dict[str, Any]:
        return json.loads(self.out.read_text())

    def manifest(self) -> Any:
        from dermseg.data.cache import open_cache

        return open_cache(self.out)

    def cached_sample(self, isic_id: str) -> Any:
        return next(s for s in self.manifest().samples if s.isic_id == isic_id)

    def cached_masks(self, isic_id: str) -> Any:
        """``(5, h, w)`` uint8 masks of one cached sample."""
        from dermseg.data.cache import CachedIsicDataset

        return CachedIsicDataset(self.manifest(), [isic_id], allow_missing_masks=True).load(0)[1]


def verify(outcome: Ok, data: Path, out: Path) -> None:
    if outcome.verify is not None:
        outcome.verify(Ctx(data, out))
