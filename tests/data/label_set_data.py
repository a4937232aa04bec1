"""Small datasets of every label set, written in tmp folders for the label-set tests.

Every mask is a rectangle given here by hand, so a test compares what dermseg read with
these numbers, not with dermseg's own reading of the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: PH2 cases of the distributed tree: id -> (clinical code, diagnosis, lesion rectangle rows, cols).
PH2_CASES: dict[str, tuple[int, str, tuple[int, int], tuple[int, int]]] = {
    "IMD002": (1, "atypical_nevus", (2, 6), (3, 9)),
    "IMD004": (0, "common_nevus", (0, 9), (0, 4)),
    "IMD010": (0, "common_nevus", (4, 8), (6, 12)),
    "IMD017": (1, "atypical_nevus", (1, 2), (1, 2)),
    "IMD058": (2, "melanoma", (3, 7), (2, 10)),
}
#: Their image size (width, height).
PH2_SIZE = (12, 9)

PH2_HEADER = (
    "||   Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry | Pigment Network | "
    "Dots/Globules | Streaks | Regression Areas | Blue-Whitish Veil ||           Colors ||"
)


def rectangle(size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool, True on ``rows[0]:rows[1]``, ``cols[0]:cols[1]``; ``size`` is (width, height)."""
    w, h = size
    mask = np.zeros((h, w), bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def ph2_mask(image_id: str) -> np.ndarray:
    """The lesion mask :func:`write_ph2_tree` writes for ``image_id``."""
    _, _, rows, cols = PH2_CASES[image_id]
    return rectangle(PH2_SIZE, rows, cols)


def _save(path: Path, array: np.ndarray, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


def _image(seed: int, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


def ph2_txt_row(image_id: str, clinical: int | str, network: str = "T") -> str:
    """One row of ``PH2_dataset.txt``."""
    return f"|| {image_id} ||  || {clinical} || 0 | {network} | A | A | A | A || 4 ||"


def write_ph2_tree(parent: Path) -> Path:
    """PH2 as distributed, under ``parent/PH2Dataset``: BMP images and lesion masks of
    :data:`PH2_CASES`, and ``PH2_dataset.txt``. Returns the ``PH2Dataset`` folder."""
    root = parent / "PH2Dataset"
    images = root / "PH2 Dataset images"
    for k, image_id in enumerate(PH2_CASES):
        folder = images / image_id
        _save(folder / f"{image_id}_Dermoscopic_Image" / f"{image_id}.bmp", _image(k, PH2_SIZE), "BMP")
        mask = np.where(ph2_mask(image_id), 255, 0).astype(np.uint8)
        _save(folder / f"{image_id}_lesion" / f"{image_id}_lesion.bmp", mask, "BMP")
    rows = [ph2_txt_row(i, case[0]) for i, case in PH2_CASES.items()]
    (root / "PH2_dataset.txt").write_text("\n".join([PH2_HEADER, *rows]) + "\n", encoding="utf-8")
    return root


def ph2_lesion_path(root: Path, image_id: str) -> Path:
    return root / "PH2 Dataset images" / image_id / f"{image_id}_lesion" / f"{image_id}_lesion.bmp"


def ph2_image_path(root: Path, image_id: str) -> Path:
    return root / "PH2 Dataset images" / image_id / f"{image_id}_Dermoscopic_Image" / f"{image_id}.bmp"


#: Task 1 cases: id -> (image size (w, h), lesion rectangle rows, cols).
TASK1_CASES: dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]] = {
    "ISIC_0000000": ((16, 12), (2, 10), (4, 12)),
    "ISIC_0000001": ((20, 10), (0, 5), (0, 20)),
    "ISIC_0000010": ((16, 12), (6, 12), (8, 16)),
    "ISIC_0000020": ((16, 12), (1, 3), (1, 3)),
}


def task1_mask(isic_id: str) -> np.ndarray:
    size, rows, cols = TASK1_CASES[isic_id]
    return rectangle(size, rows, cols)


def write_task1_case(image_dir: Path, mask_dir: Path | None, isic_id: str) -> None:
    """``ISIC_<id>.jpg`` in ``image_dir`` and (unless ``mask_dir`` is None) its
    ``_segmentation.png`` in ``mask_dir``."""
    size = TASK1_CASES[isic_id][0]
    _save(image_dir / f"{isic_id}.jpg", _image(int(isic_id[5:]), size), "JPEG")
    if mask_dir is not None:
        mask = np.where(task1_mask(isic_id), 255, 0).astype(np.uint8)
        _save(mask_dir / f"{isic_id}_segmentation.png", mask, "PNG")


def write_task1_official(root: Path, with_task2: bool = False) -> Path:
    """The official layout with Task 1 ground truth: training ISIC_0000000-01, validation
    ISIC_0000010, test ISIC_0000020 (no ground truth); with ``with_task2`` also a Task 2
    ground-truth folder (one attribute mask) beside it."""
    for split, ids in (("Training", ["ISIC_0000000", "ISIC_0000001"]), ("Validation", ["ISIC_0000010"])):
        for isic_id in ids:
            write_task1_case(
                root / f"ISIC2018_Task1-2_{split}_Input",
                root / f"ISIC2018_Task1_{split}_GroundTruth",
                isic_id,
            )
    write_task1_case(root / "ISIC2018_Task1-2_Test_Input", None, "ISIC_0000020")
    (root / "ISIC2018_Task1_Training_GroundTruth" / "LICENSE.txt").write_text("licence")
    (root / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000000_superpixels.png").write_bytes(b"")
    if with_task2:
        gt = root / "ISIC2018_Task2_Training_GroundTruth_v3"
        _save(gt / "ISIC_0000000_attribute_globules.png", np.zeros((12, 16), np.uint8), "PNG")
    return root


#: A user's label set: two labels, masks ``<id>_<label>.png``.
USER_YAML = """\
name: veil_and_regression
labels:
  - {name: veil, display_name: Blue-whitish veil, colour: [40, 90, 220]}
  - {name: regression, display_name: Regression structures}
mask_pattern: "{id}_{label}.png"
metric: isic2018_task2
"""

#: User cases: image file name -> {label: rectangle rows, cols}; all images 10x8 (w, h).
USER_SIZE = (10, 8)
USER_CASES: dict[str, dict[str, tuple[tuple[int, int], tuple[int, int]]]] = {
    "lesion_a.jpg": {"veil": ((0, 4), (0, 5)), "regression": ((4, 8), (5, 10))},
    "b2.png": {"veil": ((2, 3), (2, 8))},  # no regression mask
}


def user_mask(file_name: str, label: str) -> np.ndarray:
    rows, cols = USER_CASES[file_name][label]
    return rectangle(USER_SIZE, rows, cols)


def write_user_yaml(folder: Path, text: str = USER_YAML, name: str = "veil.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def write_user_dataset(root: Path, subfolders: bool = False) -> Path:
    """:data:`USER_CASES` flat in ``root``, or in ``root/images`` and ``root/masks``."""
    image_dir = root / "images" if subfolders else root
    mask_dir = root / "masks" if subfolders else root
    for k, (file_name, masks) in enumerate(USER_CASES.items()):
        fmt = "JPEG" if file_name.endswith(".jpg") else "PNG"
        _save(image_dir / file_name, _image(100 + k, USER_SIZE), fmt)
        stem = Path(file_name).stem
        for label in masks:
            _save(
                mask_dir / f"{stem}_{label}.png",
                np.where(user_mask(file_name, label), 255, 0).astype(np.uint8),
                "PNG",
            )
    return root


PH2_CSV_HEADER = (
    "image,histological_diagnosis,common_nevus,atypical_nevus,melanoma,asymmetry,pigment_network,"
    "dots_globules,streaks,regression_areas,blue_whitish_veil,white,red,light_brown,dark_brown,blue_gray,black"
)


def ph2_csv_row(image_id: str, clinical: int, network: str = "T") -> str:
    """One row of a flat form's ``labels.csv``."""
    marks = ["X" if clinical == k else "" for k in range(3)]
    return ",".join([image_id, "", *marks, "0", network, "A", "A", "A", "A", "", "", "", "X", "", ""])


def write_ph2_flat(root: Path) -> Path:
    """PH2 in the flat form: ``images/IMDxxx.jpg``, ``masks/IMDxxx_lesion.png`` and ``labels.csv``."""
    for k, image_id in enumerate(PH2_CASES):
        _save(root / "images" / f"{image_id}.jpg", _image(k, PH2_SIZE), "JPEG")
        mask = np.where(ph2_mask(image_id), 255, 0).astype(np.uint8)
        _save(root / "masks" / f"{image_id}_lesion.png", mask, "PNG")
    rows = [ph2_csv_row(i, case[0]) for i, case in PH2_CASES.items()]
    (root / "labels.csv").write_text("\n".join([PH2_CSV_HEADER, *rows]) + "\n", encoding="utf-8")
    return root
