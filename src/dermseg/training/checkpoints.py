"""The checkpoint files of a run at an epoch's end, and their repair when a run is resumed.

One order, one source of truth: ``last_state.pt`` is written first and is what a resume
reads; ``best.safetensors`` (when the epoch is the best so far) and ``last.safetensors`` follow.
The weights files are exports of the state: the state holds the same model weights, the epoch
and the best epoch. So a failure between the writes (a full disk, a kill) can only leave the
weights files one epoch behind a state that has the weights they lack, and
:func:`complete_checkpoints`, run when a run is resumed, writes them again from the state
before training goes on. A resume never sees the pair disagree.

Why not weights first, state last: a failure after ``best.safetensors`` but before the
state leaves a best checkpoint of an epoch the resumed run redoes, which it may then score
lower and never replace: weights the state knows nothing of.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dermseg.errors import DataError
from dermseg.models.checkpoint import read_meta, save_checkpoint
from dermseg.training.setup import Run, save_state

logger = logging.getLogger(__name__)


def save_epoch_end(run: Run, epoch: int, improved: bool) -> None:
    """Write the state, then the best checkpoint (when ``improved``), then the last one.

    Call after ``run.best`` / ``run.best_epoch`` / ``run.records`` hold the epoch.

    Raises:
        OutputError: a file cannot be written (a full disk), named.
    """
    save_state(run)
    if improved:
        save_checkpoint(run.ckpt_dir / "best.safetensors", run.model, _meta(run, epoch, best=True))
    save_checkpoint(run.ckpt_dir / "last.safetensors", run.model, _meta(run, epoch))


def complete_checkpoints(run: Run) -> list[Path]:
    """After a resume from an epoch's-end state: write the weights files its epoch left unwritten.

    A state saved at the end of epoch ``e`` holds that epoch's weights; ``last.safetensors``
    (and ``best.safetensors`` when ``e`` was the best epoch) must be of epoch ``e`` too. A
    mid-epoch state follows an epoch end whose files were all written, and needs nothing.

    Returns:
        The files written again.
    """
    pos = run.position
    if pos["batch"] != 0 or pos["epoch"] == 0:
        return []  # a mid-epoch state (or none)
    epoch = pos["epoch"] - 1
    wanted = [(run.ckpt_dir / "last.safetensors", False)]
    if run.best_epoch == epoch:
        wanted.append((run.ckpt_dir / "best.safetensors", True))
    written = []
    for path, best in wanted:
        if _epoch_of(path) != epoch:
            save_checkpoint(path, run.model, _meta(run, epoch, best=best))
            logger.warning("%s was not of the state's epoch %d: written again from the state", path, epoch)
            written.append(path)
    return written


def _meta(run: Run, epoch: int, best: bool = False) -> dict[str, Any]:
    return {**run.meta, "epoch": epoch, **({"jaccard": run.best} if best else {})}


def _epoch_of(path: Path) -> int | None:
    """The epoch a checkpoint records; ``None`` when missing or unreadable."""
    try:
        return read_meta(path).get("epoch") if path.is_file() else None
    except DataError:
        return None
