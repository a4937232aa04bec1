"""What every corpus case is made of: the base dataset's names, the outcomes, and the helpers
that break one file of a copy of it."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGES = "ISIC2018_Task1-2_Training_Input"
MASKS = "ISIC2018_Task2_Training_GroundTruth_v3"
#: The training image every image or mask case breaks.
TARGET = "ISIC_0000001"
TARGET_MASK = f"{TARGET}_attribute_globules.png"
#: Training images no case touches: their outputs must be written whatever happens to TARGET.
GOOD = ("ISIC_0000000", "ISIC_0000002")
COMMANDS = ("check", "prepare", "predict", "evaluate_pred", "evaluate_gt", "train")


@dataclass(frozen=True)
class Ok:
    """The command succeeds; ``verify(ctx)`` checks what this case adds to the generic checks."""

    verify: Callable[..., None] | None = None


@dataclass(frozen=True)
class Err:
    """The command fails with exit code 2 and a one-line error naming the file.

    Attributes:
        words: what the line must say besides the path.
        in_pred: for ``evaluate``: the file named is this file of the prediction folder
            (a truth mask without a prediction is reported at the prediction's path).
        xfail: why the command does not do this yet (a fix outside this test's reach).
    """

    words: tuple[str, ...]
    in_pred: str | None = None
    xfail: str | None = None


@dataclass(frozen=True)
class Case:
    """One malformed (or merely unusual) input.

    Attributes:
        name: the test id.
        build: breaks one thing in a copy of the base dataset; returns the offending path.
        expect: command -> outcome; commands not listed are not run.
        whole: the offending path replaces the dataset folder (for folder-level cases).
        needs_user: meaningless as root (root reads a ``chmod 000`` file).
        note: why this outcome, where the issue does not say.
    """

    name: str
    build: Callable[[Path], Path]
    expect: dict[str, Ok | Err]
    whole: bool = False
    needs_user: bool = False
    note: str = ""


OK = Ok()


def err(*words: str, in_pred: str | None = None, xfail: str | None = None) -> Err:
    return Err(tuple(words), in_pred=in_pred, xfail=xfail)


# --------------------------------------------------------------------------- building blocks


def image_path(root: Path) -> Path:
    return root / IMAGES / f"{TARGET}.jpg"


def mask_path(root: Path, attribute: str = "globules") -> Path:
    return root / MASKS / f"{TARGET}_attribute_{attribute}.png"


def pixels(root: Path) -> np.ndarray:
    """The target image as displayed, ``(64, 64, 3)`` uint8."""
    with Image.open(image_path(root)) as img:
        return np.asarray(img.convert("RGB"))


def block() -> np.ndarray:
    """A ``(64, 64)`` bool mask with one rectangle."""
    m = np.zeros((64, 64), bool)
    m[16:40, 20:44] = True
    return m


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A small PNG whose header announces ``width x height`` 8-bit gray pixels.

    Its data is a few zlib-compressed rows of zeros: decoding it would first allocate
    ``width * height`` bytes (900 MB by default), so it must be refused from the header.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes((width + 1) * 8), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def replace_with(path: Path, new_name: str) -> Path:
    """Remove ``path``; return its sibling ``new_name`` (to be written by the caller)."""
    path.unlink()
    return path.with_name(new_name)


def symlink_loop(path: Path, partner: str) -> Path:
    """Replace ``path`` with a symlink to ``partner``, which links back to it."""
    path.unlink()
    other = path.with_name(partner)
    path.symlink_to(other.name)
    other.symlink_to(path.name)
    return path


def make_unreadable(path: Path) -> Path:
    path.chmod(0)
    return path


def save_mask(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    img = Image.fromarray(array)
    (img.convert(mode) if mode else img).save(path)
    return path
