"""Corpus cases where the dataset argument itself is wrong: an empty or missing folder, a file,
a folder with an odd name."""

from __future__ import annotations

import os
from pathlib import Path

from tests.bad_input.corpus.base import OK, Case, err


def folder_empty(root: Path) -> Path:
    path = root.parent / "empty"
    path.mkdir()
    return path


def folder_missing(root: Path) -> Path:
    return root.parent / "no_such_folder"


def folder_is_file(root: Path) -> Path:
    """The archive given instead of the folder it unpacks to."""
    path = root.parent / "ISIC2018_Task1-2_Training_Input.zip"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    return path


def folder_odd_name(root: Path) -> Path:
    """The dataset moved to ``ward [/x] caf\xe9``: rich markup in the path, and a Latin-1 byte."""
    ward = root.parent / "ward ["
    ward.mkdir()
    target = os.path.join(os.fsencode(ward), b"x] caf\xe9")
    os.rename(os.fsencode(root), target)
    return Path(os.fsdecode(target))


CASES: tuple[Case, ...] = (
    Case(
        "folder_empty",
        folder_empty,
        {
            "check": err("no ISIC images found"),
            "prepare": err("no ISIC images found"),
            "predict": err("no images found"),
            "evaluate_pred": err("no prediction masks found"),
            "evaluate_gt": err("no ground-truth masks found"),
            "train": err("no ISIC images found"),
        },
        whole=True,
    ),
    Case(
        "folder_missing",
        folder_missing,
        {
            "check": err("folder not found"),
            "prepare": err("folder not found"),
            "predict": err("file not found"),
            "evaluate_pred": err("folder not found"),
            "evaluate_gt": err("folder not found"),
            "train": err("folder not found"),
        },
        whole=True,
    ),
    Case(
        "folder_is_file",
        folder_is_file,
        {
            "check": err("is a file"),
            "prepare": err("is a file"),
            "predict": err("not a readable image"),
            "evaluate_pred": err("is a file"),
            "evaluate_gt": err("is a file"),
            "train": err("is a file"),
        },
        whole=True,
        note="predict takes a file argument as an image to segment",
    ),
    Case(
        "folder_odd_name",
        folder_odd_name,
        dict.fromkeys(("check", "prepare", "predict", "evaluate_pred", "evaluate_gt"), OK),
        whole=True,
        note="a path is shown with its odd bytes escaped and its brackets as text (Latin-1 names "
        "from old Windows shares; '[/x]' is rich markup)",
    ),
)
