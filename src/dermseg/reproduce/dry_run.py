"""``--dry-run``: the whole reproduction on a small synthetic ISIC 2018 served from 127.0.0.1.

The official archives are imitated exactly (names, top-level folders, file names) with
synthetic images and masks, zipped, and served by a local HTTP server, so the chain that
runs on the real data (download with resume and integrity checks, cache, training,
tuning, prediction, scoring, report) runs end to end in a minute on a CPU.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

from dermseg.data.synthetic import write_dataset

#: Small-model overrides applied on top of the recipe for a dry run (a CPU minute, not GPU hours).
DRY_RUN_OVERRIDES = [
    "data.size=96",
    "data.crop_size=96",
    "data.workers=0",
    "data.val_fraction=0.2",
    "model.encoder_name=resnet18",
    "model.encoder_weights=none",
    "model.decoder_channels=[32,16,16,8,8]",
    "model.aspp_rates=[1,2]",
    "train.epochs=2",
    "train.batch_size=4",
    "train.lr=0.003",
    "train.warmup_epochs=0.5",
    "train.checkpoint_every=2",
]

#: Images per split of the dry-run dataset.
DRY_RUN_IMAGES = {"training": 20, "validation": 4, "test": 4}

_ARCHIVE_OF_FOLDER = {
    "ISIC2018_Task1-2_Training_Input": "ISIC2018_Task1-2_Training_Input.zip",
    "ISIC2018_Task2_Training_GroundTruth_v3": "ISIC2018_Task2_Training_GroundTruth_v3.zip",
    "ISIC2018_Task1_Training_GroundTruth": "ISIC2018_Task1_Training_GroundTruth.zip",
    "ISIC2018_Task1-2_Validation_Input": "ISIC2018_Task1-2_Validation_Input.zip",
    "ISIC2018_Task2_Validation_GroundTruth": "ISIC2018_Task2_Validation_GroundTruth.zip",
    "ISIC2018_Task1_Validation_GroundTruth": "ISIC2018_Task1_Validation_GroundTruth.zip",
    "ISIC2018_Task1-2_Test_Input": "ISIC2018_Task1-2_Test_Input.zip",
    "ISIC2018_Task2_Test_GroundTruth": "ISIC2018_Task2_Test_GroundTruth.zip",
    "ISIC2018_Task1_Test_GroundTruth": "ISIC2018_Task1_Test_GroundTruth.zip",
}


def build_archives(out: Path, size: int = 128, seed: int = 7) -> list[Path]:
    """Write synthetic imitations of the nine official archives into ``out``.

    Returns:
        The zip files written.
    """
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dermseg-dry-run-") as tmp:
        staging = Path(tmp)
        start = 0
        for split, n in DRY_RUN_IMAGES.items():
            write_dataset(staging, n, size=size, seed=seed, split=split, start_id=start, lesion_masks=True)
            start += n
        written = []
        for folder, name in _ARCHIVE_OF_FOLDER.items():
            target = out / name
            with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for f in sorted((staging / folder).iterdir()):
                    zf.write(f, f"{folder}/{f.name}")
            written.append(target)
    return written


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) for the duration of the block.

    Yields:
        The base URL, ending in ``/``.
    """
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="dermseg-dry-run-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def dry_run_server(run_dir: Path) -> Iterator[str]:
    """Build the synthetic archives under ``run_dir/dry-run-archives`` (once) and serve them."""
    folder = run_dir / "dry-run-archives"
    if not all((folder / name).is_file() for name in _ARCHIVE_OF_FOLDER.values()):
        shutil.rmtree(folder, ignore_errors=True)
        build_archives(folder)
    with serve_folder(folder) as url:
        yield url
