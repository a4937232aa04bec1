"""The ``dermseg`` command line's application object, shared helpers and error handling.

Library errors (:class:`~dermseg.errors.DermsegError`) become one line on stderr
and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from dermseg._version import __version__
from dermseg.errors import DermsegError, display_path

if TYPE_CHECKING:
    from rich.table import Table

    from dermseg.inference.segmenter import Segmenter
    from dermseg.labels import LabelSet

#: ``--max-aspect-ratio`` and ``--max-side-factor`` of the commands that read images
#: (:class:`~dermseg.data.shape_limits.ShapeLimits`).
MAX_ASPECT_OPTION = typer.Option(
    8.0,
    "--max-aspect-ratio",
    min=1.0,
    help="Most elongated image accepted (long side / short side); a longer one is refused, named.",
)
MAX_SIDE_OPTION = typer.Option(
    8.0,
    "--max-side-factor",
    min=1.0,
    help="Longest working image accepted (the field of view with its short side at the model's "
    "input size), in multiples of the input size; a longer one is refused, named.",
)

app = typer.Typer(
    name="dermseg",
    help="Segment the local dermoscopic structures of ISIC 2018 Task 2 "
    "(globules, milia-like cysts, negative network, pigment network, streaks).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        console.print(f"dermseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def progress_bar(*middle: ProgressColumn) -> Progress:
    """A progress bar on stderr: the task's name, a bar, ``middle`` columns (default: done/total),
    and the time left; drawn only on a terminal (logs and tests stay clean)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        *(middle or (MofNCompleteColumn(),)),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        disable=not err_console.is_terminal,
    )


def _progress() -> Progress:
    return progress_bar()


class RateColumn(ProgressColumn):
    """How many ``unit`` a second a task is going through (rich's moving average), e.g. ``4.2 img/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-" if speed is None else f"{speed:.1f} {self.unit}/s", style="progress.data.speed")


class _TrainProgress:
    """Rich progress bar for training: loss, images/s and ETA per epoch; one line per epoch."""

    def __init__(self) -> None:
        self.bar = progress_bar(
            MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:.1f} img/s")
        )
        self.task: int | None = None

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task(f"epoch {epoch}", total=steps, loss=float("nan"), ips=0.0)

    def on_step(self, loss: float, images_per_s: float) -> None:
        if self.task is not None:
            self.bar.update(self.task, advance=1, loss=loss, ips=images_per_s)

    def on_epoch_end(self, record: dict) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.bar.stop()
        jac = f"  official Jaccard {record['jaccard']:.4f}" if "jaccard" in record else ""
        if "threshold_jaccard" in record:  # a lesion (Task 1 metric): selected on the mean Jaccard
            jac = (
                f"  mean Jaccard {record['jaccard']:.4f} (thresholded {record['threshold_jaccard']:.4f}, "
                f"Dice {record['dice']:.4f})"
            )
        console.print(
            f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}"
            + (f"  val loss {record['val_loss']:.4f}" if "val_loss" in record else "")
            + jac
            + f"  ({record['images_per_s']:.1f} img/s)"
        )


def _write_json(path: Path, data: dict) -> None:
    from dermseg.files import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def task1_table(title: str, scores: dict) -> Table:
    """The official ISIC 2018 Task 1 scores (``SegmentationScore.to_dict()`` keys) as a table:
    the macro averages over images, the leaderboard number (thresholded Jaccard) last."""
    from rich.table import Table

    macro = scores["macro_average"]
    table = Table(title=title)
    table.add_column("score (mean over images)")
    table.add_column("value", justify="right")
    for key, label in (
        ("jaccard", "Jaccard"),
        ("dice", "Dice"),
        ("accuracy", "accuracy"),
        ("sensitivity", "sensitivity"),
        ("specificity", "specificity"),
    ):
        table.add_row(label, f"{macro[key]:.4f}")
    table.add_row("[bold]thresholded Jaccard (official)[/]", f"[bold]{scores['overall']:.4f}[/]")
    return table


def limit_shapes(segmenter: Segmenter, max_aspect_ratio: float, max_side_factor: float) -> None:
    """Give ``segmenter`` (and its lesion model, if it has one) the shape limits of
    ``--max-aspect-ratio`` and ``--max-side-factor``."""
    from dermseg.data.shape_limits import ShapeLimits

    segmenter.limits = ShapeLimits(max_aspect_ratio, max_side_factor)
    if segmenter.lesion_field is not None:
        segmenter.lesion_field.model.limits = segmenter.limits


def segmenter_config(checkpoint: Path) -> dict:
    """The training config stored in a checkpoint (for the validation split it was selected on)."""
    from dermseg.models.checkpoint import read_meta

    return read_meta(checkpoint).get("config") or {}


#: ``--lesion-checkpoint``, ``--lesion-margin``, ``--outside-lesion`` of predict, evaluate and serve.
LESION_CHECKPOINT_OPTION = typer.Option(
    None,
    "--lesion-checkpoint",
    help="A lesion model (trained for isic2018_task1 or ph2) whose predicted lesion box, with a margin, "
    "is what the structure model sees, resized to its working size (more pixels on the structures).",
)
LESION_MARGIN_OPTION = typer.Option(
    None,
    "--lesion-margin",
    help="Skin kept around the lesion box, as a fraction of its longer side (default: the margin "
    "the model was trained with, data.field_margin, else 0.2).",
)
OUTSIDE_LESION_OPTION = typer.Option(
    "keep",
    "--outside-lesion",
    help="keep, or empty: set structures outside the (slightly dilated) predicted lesion to 0.",
)


#: ``--tiles`` and its settings, of predict, evaluate and serve (:mod:`dermseg.inference.tiling`).
TILES_OPTION = typer.Option(
    False,
    "--tiles",
    help="Predict by overlapping tiles of the model's training crop, blended with Gaussian weights "
    "(nnU-Net's sliding window), instead of one resize of the whole field.",
)
TILE_SCALE_OPTION = typer.Option(
    None,
    "--tile-scale",
    help="With --tiles: size of a network pixel in pixels of the one-resize working image (default 1: "
    "the training scale; 0.5: twice the resolution, structures twice as large as in training).",
)
TILE_OVERLAP_OPTION = typer.Option(
    None, "--tile-overlap", help="With --tiles: overlap of neighbouring tiles, a fraction of a tile (0.5)."
)
TILE_BATCH_OPTION = typer.Option(None, "--tile-batch", help="With --tiles: tiles per forward pass (4).")


def use_tiles(
    segmenter: Segmenter, tiles: bool, scale: float | None, overlap: float | None, batch: int | None
) -> None:
    """Give ``segmenter`` the tiling of ``--tiles`` (and print it), or check that no tile setting
    is given without it.

    Raises:
        ConfigError: a tile setting without ``--tiles``, or out of range.
    """
    from dermseg.errors import ConfigError
    from dermseg.inference.tiling import DEFAULT_BATCH, DEFAULT_OVERLAP, Tiling

    if not tiles:
        if (scale, overlap, batch) != (None, None, None):
            raise ConfigError("--tile-scale, --tile-overlap and --tile-batch need --tiles")
        return
    try:
        segmenter.tiling = Tiling(
            scale=1.0 if scale is None else scale,
            overlap=DEFAULT_OVERLAP if overlap is None else overlap,
            batch=DEFAULT_BATCH if batch is None else batch,
        )
    except ValueError as err:
        raise ConfigError(f"--tiles: {err}") from None
    console.print(segmenter.tiling_description, markup=False, highlight=False)


def use_lesion_model(
    segmenter: Segmenter,
    lesion_checkpoint: Path | None,
    margin: float | None,
    outside: str,
    device: str,
    backend: str | None = None,
) -> None:
    """Give ``segmenter`` the lesion model of ``--lesion-checkpoint`` as its field, and print what
    the network sees (:attr:`~dermseg.inference.segmenter.Segmenter.field_description`).

    Raises:
        ConfigError: ``--outside-lesion`` is neither keep nor empty, or is ``empty`` (or a
            ``--lesion-margin`` is given) without a lesion model; the margin is out of range.
        DataError: the lesion file is not a usable one-label model, or ``segmenter`` is itself one.
    """
    from dermseg.errors import ConfigError
    from dermseg.inference.segmenter import Segmenter

    if outside not in ("keep", "empty"):
        raise ConfigError(f"--outside-lesion must be keep or empty, got {outside!r}")
    if lesion_checkpoint is None:
        if outside == "empty" or margin is not None:
            raise ConfigError("--outside-lesion empty and --lesion-margin need --lesion-checkpoint")
    else:
        lesion = Segmenter.from_path(lesion_checkpoint, backend=backend, device=device)
        try:
            segmenter.use_lesion_model(
                lesion, margin, empty_outside=outside == "empty", name=display_path(lesion_checkpoint)
            )
        except ValueError as err:
            raise ConfigError(f"--lesion-margin: {err}") from None
    if lesion_checkpoint is not None or segmenter.trained_field[0] != "fov":
        console.print(segmenter.field_description, markup=False, highlight=False)


def model_on_data(
    segmenter: Segmenter, model_path: Path, data: Path | None, labels: str | None = None
) -> LabelSet:
    """The label set of ``data`` (``labels`` as ``--labels`` gives it, else detected from the folder,
    else the model's own: a user's set, or images only, cannot be told), checked to be the model's.

    Raises:
        ConfigError: ``labels`` is neither a built-in set nor a readable label set file.
        DataError: the model segments another label set (one line naming the model file).
    """
    from dermseg.data.layout import detect_label_set, label_set_for
    from dermseg.inference.segmenter import require_label_set

    if data is None:
        if labels is None:
            return segmenter.labels
        wanted = label_set_for(".", labels)
        require_label_set(segmenter.labels, wanted, model_path, f"--labels {labels}")
        return wanted
    wanted = label_set_for(data, labels) if labels is not None else detect_label_set(data)
    if wanted is None:  # a user's set, or images only: nothing to tell it from
        return segmenter.labels
    require_label_set(segmenter.labels, wanted, model_path, display_path(data))
    return wanted


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by tests and by the ``dermseg`` script).

    Usage errors (unknown option, missing argument) are reported by the command-line parser
    with exit code 2; :class:`DermsegError` becomes one line on stderr and exit code 2.
    """
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 file name must not crash the message
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        app(args=argv, prog_name="dermseg", standalone_mode=True)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except DermsegError as err:
        if _state["debug"]:
            raise
        print(f"dermseg: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file system refusal (permission, disk full, a file where a folder goes)
        if _state["debug"]:
            raise
        where = f"{display_path(err.filename)}: " if err.filename else ""
        print(f"dermseg: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dermseg: interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def write_run_report(run_dir: Path, data: Path | None, device: str | None, tta: bool | None = None) -> None:
    """The HTML report of a training run, after ``train`` / ``evaluate --checkpoint`` (rank 0 only).

    ``tta``: flip TTA of the evaluation pass (``None``: as the checkpoint's thresholds were tuned).

    A failure is reported in one line and does not fail the command: the run itself is complete.
    """
    import os

    if os.environ.get("RANK", "0") != "0":
        return
    from dermseg.report import write_report

    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        with _progress() as bar:
            task = bar.add_task("report", total=None)
            path = write_report(
                run_dir,
                data=data,
                device=device,
                tta=tta,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except DermsegError as err:
        err_console.print(f"report not written: {err}", markup=False, highlight=False, soft_wrap=True)
        return
    console.print(f"report: {display_path(path)}", markup=False, highlight=False, soft_wrap=True)
