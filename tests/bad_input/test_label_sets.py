"""Bad PH2 folders and bad label-set files through ``check``, ``split`` and ``prepare``.

Each case gives exactly one line on stderr, ``dermseg: error: <file>: <problem>``, exit code 2,
no traceback, and writes nothing: no ``--json`` report, no split file, no cache folder, and no
temporary file anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.cli import main
from dermseg.errors import display_path
from tests.data.label_set_data import (
    PH2_CSV_HEADER,
    PH2_HEADER,
    ph2_csv_row,
    ph2_image_path,
    ph2_lesion_path,
    ph2_txt_row,
    write_ph2_flat,
    write_ph2_tree,
    write_user_yaml,
)

PREFIX = "dermseg: error: "


@dataclass(frozen=True)
class Case:
    """A bad input: ``build(tmp)`` returns ``(dataset folder, offending file, extra CLI args)``."""

    name: str
    build: Callable[[Path], tuple[Path, Path, list[str]]]
    words: tuple[str, ...]


def _tree(tmp: Path) -> Path:
    return write_ph2_tree(tmp / "data")


def _missing_mask(tmp: Path) -> tuple[Path, Path, list[str]]:
    root = _tree(tmp)
    mask = ph2_lesion_path(root, "IMD010")
    mask.unlink()
    return root, mask, []


def _bmp_odd_header(tmp: Path) -> tuple[Path, Path, list[str]]:
    root = _tree(tmp)
    image = ph2_image_path(root, "IMD002")
    image.write_bytes(b"BM" + b"\x00" * 10 + b"not a bitmap header" * 4)
    return root, image, []


def _bmp_truncated(tmp: Path) -> tuple[Path, Path, list[str]]:
    root = _tree(tmp)
    image = ph2_image_path(root, "IMD058")
    data = image.read_bytes()
    image.write_bytes(data[: len(data) - 40])  # the header announces more rows than there are
    return root, image, []


def _mask_wrong_size(tmp: Path) -> tuple[Path, Path, list[str]]:
    root = _tree(tmp)
    mask = ph2_lesion_path(root, "IMD004")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask, format="BMP")
    return root, mask, []


def _flat_mask_wrong_size(tmp: Path) -> tuple[Path, Path, list[str]]:
    root = write_ph2_flat(tmp / "data")
    mask = root / "masks" / "IMD017_lesion.png"
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(mask)
    return root, mask, []


def _txt_unknown_value(tmp: Path) -> tuple[Path, Path, list[str]]:
    root = _tree(tmp)
    criteria = root / "PH2_dataset.txt"
    rows = [ph2_txt_row("IMD002", 1), ph2_txt_row("IMD004", 0, network="Q")]
    rows += [ph2_txt_row(i, c) for i, c in (("IMD010", 0), ("IMD017", 1), ("IMD058", 2))]
    criteria.write_text("\n".join([PH2_HEADER, *rows]) + "\n", encoding="utf-8")
    return root, criteria, []


def _csv_unknown_value(tmp: Path) -> tuple[Path, Path, list[str]]:
    root = write_ph2_flat(tmp / "data")
    criteria = root / "labels.csv"
    rows = [ph2_csv_row(i, c) for i, c in (("IMD002", 1), ("IMD004", 0), ("IMD010", 0), ("IMD017", 1))]
    rows.append(ph2_csv_row("IMD058", 2).replace(",0,T,", ",7,T,"))  # asymmetry 7
    criteria.write_text("\n".join([PH2_CSV_HEADER, *rows]) + "\n", encoding="utf-8")
    return root, criteria, []


def _yaml(text: str) -> Callable[[Path], tuple[Path, Path, list[str]]]:
    def build(tmp: Path) -> tuple[Path, Path, list[str]]:
        root = _tree(tmp)
        path = write_user_yaml(tmp / "sets", text, "bad.yaml")
        return root, path, ["--labels", str(path)]

    return build


CASES = [
    Case("ph2_missing_lesion_mask", _missing_mask, ("lesion mask not found",)),
    Case("ph2_bmp_odd_header", _bmp_odd_header, ("unreadable image header",)),
    Case("ph2_bmp_truncated", _bmp_truncated, ("truncated image",)),
    Case("ph2_mask_wrong_size", _mask_wrong_size, ("lesion mask is 10x10 but its image is 12x9",)),
    Case("ph2_flat_mask_wrong_size", _flat_mask_wrong_size, ("lesion mask is 7x5 but its image is 12x9",)),
    Case("ph2_criteria_unknown_value", _txt_unknown_value, ("IMD004", "unknown pigment_network value 'Q'")),
    Case("ph2_flat_criteria_unknown_value", _csv_unknown_value, ("IMD058", "unknown asymmetry value '7'")),
    Case(
        "label_set_duplicate_name",
        _yaml("name: mine\nlabels: [veil, regression, veil]\nmask_pattern: '{id}_{label}.png'\n"),
        ("label 'veil' appears twice",),
    ),
    Case(
        "label_set_unknown_metric",
        _yaml("name: mine\nlabels: [veil]\nmask_pattern: '{id}_veil.png'\nmetric: dice\n"),
        ("metric 'dice' is unknown",),
    ),
]

#: command -> (its arguments after DATA, given the output path; the output path's name)
COMMANDS: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "check": (lambda out: ["--json", str(out), "--workers", "1"], "report.json"),
    "split": (lambda out: ["--out", str(out), "--val-fraction", "0.4"], "split.json"),
    "prepare": (lambda out: ["--out", str(out), "--size", "32", "--workers", "1"], "cache"),
}


def _leftovers(folder: Path) -> list[str]:
    return [os.path.join(p, f) for p, _d, files in os.walk(folder) for f in files if ".tmp" in f]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_one_line_naming_the_file_and_nothing_written(
    case: Case, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, offending, extra = case.build(tmp_path)
    args, out_name = COMMANDS[command]
    out = tmp_path / "out" / out_name
    capsys.readouterr()
    code = main([command, str(data), *args(out), *extra])
    cap = capsys.readouterr()
    shown = f"{cap.out}\n--- stderr\n{cap.err}"
    assert code == 2, shown
    assert "Traceback" not in cap.out + cap.err, shown
    lines = [line for line in cap.err.splitlines() if line.strip()]
    assert len(lines) == 1, shown
    assert lines[0].startswith(f"{PREFIX}{display_path(offending)}: "), shown
    assert all(w in lines[0] for w in case.words), shown
    assert not out.exists() and not (tmp_path / "out").exists(), shown
    assert not _leftovers(tmp_path)


def test_the_good_tree_passes_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The base every case breaks is itself valid (so each failure is the case's)."""
    data = _tree(tmp_path)
    for command, (args, out_name) in COMMANDS.items():
        out = tmp_path / command / out_name
        assert main([command, str(data), *args(out)]) == 0, capsys.readouterr()
        assert out.exists()
    flat = write_ph2_flat(tmp_path / "flat")
    assert main(["check", str(flat)]) == 0, capsys.readouterr()
