"""Inference commands: ``predict``, ``export``, ``evaluate``.

Each follows the label set of the model (or, for ``evaluate --pred``, of the truth): Task 2's
five attribute masks and pooled Jaccard, or a lesion set's one mask and the ISIC 2018 Task 1
scores. A model used on data of another label set is refused in one line (exit code 2).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.progress import MofNCompleteColumn
from rich.table import Table

from dermseg.attributes import ATTRIBUTES, DISPLAY_NAMES
from dermseg.cli.app import (
    LESION_CHECKPOINT_OPTION,
    LESION_MARGIN_OPTION,
    MAX_ASPECT_OPTION,
    MAX_SIDE_OPTION,
    OUTSIDE_LESION_OPTION,
    TILE_BATCH_OPTION,
    TILE_OVERLAP_OPTION,
    TILE_SCALE_OPTION,
    TILES_OPTION,
    RateColumn,
    _progress,
    _write_json,
    app,
    console,
    err_console,
    limit_shapes,
    model_on_data,
    progress_bar,
    segmenter_config,
    task1_table,
    use_lesion_model,
    use_tiles,
    write_run_report,
)
from dermseg.errors import ConfigError, display_path

if TYPE_CHECKING:
    from dermseg.evaluation.task1_folders import Task1EvaluationResult
    from dermseg.inference.segmenter import Segmenter

_LABELS_HELP = (
    "Label set of the data: isic2018_task2, isic2018_task1, ph2, or a label set YAML file "
    "(default: told from the folder's names, else isic2018_task2)."
)


def _shown(path: str | Path) -> str:
    """A user's path in rich output: odd bytes escaped, brackets not taken for markup."""
    return escape(display_path(path))


@app.command()
def predict(
    inputs: list[Path] = typer.Argument(..., help="Images and/or folders of images."),
    checkpoint: list[Path] = typer.Option(
        ...,
        "--checkpoint",
        help="A dermseg .safetensors checkpoint, or a .onnx model from `dermseg export`; "
        "repeat it to average several models (e.g. k folds).",
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for the masks (named as the model's label set names them)."
    ),
    overlays: bool = typer.Option(False, "--overlays", help="Also write image | prediction overlays."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write 16-bit probability maps."),
    tta: bool | None = typer.Option(
        None,
        "--tta/--no-tta",
        help="Average with flipped predictions, or not (default: as the checkpoint's thresholds "
        "were tuned; off for untuned thresholds).",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    backend: str | None = typer.Option(
        None,
        "--backend",
        help="torch or onnxruntime (default: torch; onnxruntime for a .onnx model). "
        "onnxruntime with a .safetensors checkpoint exports it to ONNX first.",
    ),
    labels: str | None = typer.Option(
        None,
        "--labels",
        help="The label set the images are to be segmented for (a built-in name or a YAML file): "
        "a model of another set is refused.",
    ),
    lesion_checkpoint: Path | None = LESION_CHECKPOINT_OPTION,
    lesion_margin: float | None = LESION_MARGIN_OPTION,
    outside_lesion: str = OUTSIDE_LESION_OPTION,
    max_aspect_ratio: float = MAX_ASPECT_OPTION,
    max_side_factor: float = MAX_SIDE_OPTION,
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="Predict part i of N (0-based, e.g. 0/4) of the images sorted by name, for job arrays; "
        "under torchrun each rank also takes its part by itself.",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Predict into a folder that holds predictions of another checkpoint or other settings "
        "(its manifest says), all its images again; without it such a run is refused.",
    ),
    tiles: bool = TILES_OPTION,
    tile_scale: float | None = TILE_SCALE_OPTION,
    tile_overlap: float | None = TILE_OVERLAP_OPTION,
    tile_batch: int | None = TILE_BATCH_OPTION,
    pipeline: bool = typer.Option(
        False,
        "--pipeline/--no-pipeline",
        help="Decode the next images and write the last ones' files in background threads while "
        "the network runs (the same files as one at a time).",
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=1,
        help="Threads of the network: ONNX Runtime's intra-op threads, torch's threads "
        "(default: theirs, one per core).",
    ),
    draft_decode: bool = typer.Option(
        False,
        "--draft-decode/--full-decode",
        help="Decode a large JPEG at a reduced scale (1/2, 1/4, 1/8) whose short side stays at "
        "least the side training decoded at, as training decodes it (4288x2848: decode about 8x "
        "faster), masks still at full size; off by default: on synthetic 4288x2848 images it lost "
        "0.0068 official Jaccard against full-scale decoding (BENCHMARKS.md, predict-speed).",
    ),
    png_level: int = typer.Option(
        1,
        "--png-level",
        min=0,
        max=9,
        help="zlib level of the PNGs written: same pixels at any level; 1 (default) encodes masks "
        "about 1.7x faster than Pillow's 6 for slightly larger files.",
    ),
) -> None:
    """Write the masks of every image (0/255 PNG, image size): the five Task 2 attribute masks,
    or one lesion mask, as the model's label set says; a bad image is reported, not fatal.
    Resumable: images already predicted into the folder with the same model and settings are skipped."""
    from dermseg.inference.ensemble import ensemble_segmenter
    from dermseg.inference.folder import predict_images
    from dermseg.inference.shard import rank_device

    images = _shard_images(inputs, shard)
    device = rank_device(device, os.environ)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    segmenter = ensemble_segmenter(checkpoint, backend=backend, device=device, tta=tta, threads=threads)
    limit_shapes(segmenter, max_aspect_ratio, max_side_factor)
    if labels is not None:
        model_on_data(segmenter, checkpoint[0], None, labels)
    use_lesion_model(segmenter, lesion_checkpoint, lesion_margin, outside_lesion, device, backend)
    use_tiles(segmenter, tiles, tile_scale, tile_overlap, tile_batch)
    segmenter.draft_decode = draft_decode
    console.print(segmenter.tta_description, markup=False, highlight=False)
    todo = _pending(segmenter, images, checkpoint, lesion_checkpoint, out, overlays, probabilities, overwrite)
    with progress_bar(MofNCompleteColumn(), RateColumn("img")) as bar:
        task = bar.add_task("predict", total=len(todo))
        report = predict_images(
            segmenter,
            todo,
            out,
            overlays=overlays,
            probabilities=probabilities,
            progress=lambda k: bar.advance(task, k),
            compress_level=png_level,
            pipeline=pipeline,
        )
    console.print(f"wrote masks of {len(report.written)} image(s) to {_shown(out)}")
    if report.failed:
        for path, message in report.failed:
            err_console.print(
                f"dermseg: error: {display_path(path)}: {message}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        err_console.print(f"[bold red]{len(report.failed)} of {len(images)} image(s) failed[/]")
        raise typer.Exit(2)


def _shard_images(inputs: list[Path], shard: str | None) -> list[Path]:
    """The images of ``inputs`` this process predicts: its ``--shard``, then its torchrun rank's part."""
    from dermseg.inference.folder import collect_images
    from dermseg.inference.shard import Shard

    part = Shard.parse(shard) if shard is not None else Shard()
    rank = Shard.of_rank(os.environ)
    images = collect_images(inputs)
    mine = rank.select(part.select(images))
    if (part.count, rank.count) != (1, 1):
        where = " and ".join(f"{what} {s}" for what, s in (("shard", part), ("rank", rank)) if s.count > 1)
        console.print(f"{where}: {len(mine)} of {len(images)} image(s)", markup=False, highlight=False)
    return mine


def _pending(
    segmenter: Segmenter,
    images: list[Path],
    checkpoint: list[Path],
    lesion_checkpoint: Path | None,
    out: Path,
    overlays: bool,
    probabilities: bool,
    overwrite: bool,
) -> list[Path]:
    """Record the run's manifest in ``out`` (or check it is the one there) and list the images
    whose outputs are not yet complete, saying how many are."""
    from dermseg.inference.folder import pending_images
    from dermseg.inference.run_manifest import claim_folder, predict_manifest, predict_settings

    settings = predict_settings(segmenter, overlays=overlays, probabilities=probabilities)
    since = claim_folder(out, predict_manifest(checkpoint, settings, lesion_checkpoint), overwrite)
    todo = pending_images(images, out, segmenter.labels, since)
    if len(todo) < len(images):
        console.print(
            f"{len(images) - len(todo)} of {len(images)} image(s) already predicted in {_shown(out)} "
            "with this model and settings: skipped"
        )
    return todo


@app.command()
def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A dermseg .safetensors checkpoint."),
    out: Path = typer.Option(..., "--out", help="The .onnx file to write."),
    opset: int = typer.Option(17, "--opset", min=13, help="ONNX opset version."),
    static: bool = typer.Option(False, "--static", help="Fixed 1x3x97x130 input, no dynamic axes."),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Quantise to INT8 (static, calibrated on --calibration images): faster on a CPU, "
        "masks close to but not the same as the float model's.",
    ),
    calibration: Path | None = typer.Option(
        None, "--calibration", help="With --int8: a folder of training images to calibrate on."
    ),
    calibration_images: int = typer.Option(
        32, "--calibration-images", min=1, help="With --int8: how many of them (evenly spaced by name)."
    ),
) -> None:
    """Export a checkpoint to ONNX: normalised (B, 3, H, W) image -> (B, C, H, W) probabilities."""
    from dermseg.inference.export import export_onnx
    from dermseg.inference.segmenter import checkpoint_label_set
    from dermseg.models.checkpoint import read_meta

    if int8 != (calibration is not None):
        raise ConfigError(
            "--int8 and --calibration go together: INT8 export is calibrated on training images"
        )
    if static and int8:
        raise ConfigError("--int8 needs dynamic axes: drop --static")
    if int8:
        from dermseg.inference.quantize import export_int8

        path = export_int8(checkpoint, out, calibration, calibration_images)
    else:
        path = export_onnx(checkpoint, out, opset=opset, dynamic=not static)
    labels = checkpoint_label_set(read_meta(checkpoint), checkpoint)
    channels = f"(B, {labels.num_labels}, H, W)"
    if labels.name != "isic2018_task2":
        channels += f" of label set {labels.name} ({', '.join(labels.names)})"
    console.print(
        f"wrote {_shown(path)}: input 'image' (B, 3, H, W) float32, normalised; "
        f"output 'probabilities' {channels}; description in its metadata" + (", INT8" if int8 else "")
    )


def _scores_table(title: str, scores: dict) -> Table:
    ranked = "pixel" in scores  # AUC/AP need probabilities: only with --checkpoint
    columns = ["attribute", "Jaccard", "Dice"] + (["pixel AUC", "pixel AP", "presence AUC"] if ranked else [])
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col == "attribute" else "right")

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    for a in ATTRIBUTES:
        if a not in scores:  # no ground truth for it (e.g. a folder with pigment-network masks only)
            continue
        row = [DISPLAY_NAMES[a], fmt(scores[a]["jaccard"]), fmt(scores[a]["dice"])]
        if ranked:
            pixel, pres = scores["pixel"].get(a, {}), scores["presence"].get(a, {})
            row += [fmt(pixel.get("auc")), fmt(pixel.get("ap")), fmt(pres.get("auc"))]
        table.add_row(*row)
    last = [
        "[bold]overall (official)[/]",
        f"[bold]{scores['overall']:.4f}[/]",
        fmt(scores["micro_average"]["dice"]),
    ]
    table.add_row(*last, *([""] * (len(columns) - 3)))
    return table


def _print_task1(
    title: str, result: Task1EvaluationResult, json_out: Path | None, csv_out: Path | None
) -> None:
    from dermseg.evaluation.task1_folders import write_csv, write_json

    console.print(task1_table(title, result.scores))
    console.print(
        f"{result.images_with_lesion} of {result.images} image(s) have a lesion in their ground truth; "
        "thresholded Jaccard: an image's Jaccard, 0 below 0.65"
    )
    if json_out is not None:
        write_json(json_out, result)
    if csv_out is not None:
        write_csv(csv_out, result)


@app.command()
def evaluate(
    pred: Path | None = typer.Option(None, "--pred", help="Folder of predicted masks (submission naming)."),
    gt: Path | None = typer.Option(None, "--gt", help="Folder of ground-truth masks."),
    checkpoint: list[Path] = typer.Option(
        [],
        "--checkpoint",
        help="Run this checkpoint instead of --pred; repeat it to score the average of several models.",
    ),
    data: Path | None = typer.Option(None, "--data", help="Dataset to run the checkpoint on."),
    labels: str | None = typer.Option(None, "--labels", help=_LABELS_HELP),
    subset: str = typer.Option(
        "auto",
        "--subset",
        help="auto, val (the selection split), validation or test (official folders), or all.",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the scores as JSON."),
    csv_out: Path | None = typer.Option(
        None,
        "--csv",
        help="Write per-attribute scores as CSV (Task 2, with --pred), or per-image scores (Task 1 sets).",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (with --checkpoint)."),
    tta: bool | None = typer.Option(
        None,
        "--tta/--no-tta",
        help="Flip test-time augmentation on or off (with --checkpoint; default: as the checkpoint's "
        "thresholds were tuned, off for untuned thresholds).",
    ),
    lesion_checkpoint: Path | None = LESION_CHECKPOINT_OPTION,
    lesion_margin: float | None = LESION_MARGIN_OPTION,
    outside_lesion: str = OUTSIDE_LESION_OPTION,
    max_aspect_ratio: float = MAX_ASPECT_OPTION,
    max_side_factor: float = MAX_SIDE_OPTION,
    tiles: bool = TILES_OPTION,
    tile_scale: float | None = TILE_SCALE_OPTION,
    tile_overlap: float | None = TILE_OVERLAP_OPTION,
    tile_batch: int | None = TILE_BATCH_OPTION,
) -> None:
    """Score masks with the official metric of their label set (ISIC 2018 Task 2, or Task 1 for a lesion
    set such as ph2): a prediction folder, or a checkpoint on data."""
    if checkpoint:
        if data is None or pred is not None:
            raise ConfigError("--checkpoint needs --data (and no --pred)")
        from dermseg.inference.ensemble import ensemble_segmenter

        segmenter = ensemble_segmenter(checkpoint, device=device, tta=tta)
        limit_shapes(segmenter, max_aspect_ratio, max_side_factor)
        data_labels = model_on_data(segmenter, checkpoint[0], data, labels)
        use_lesion_model(segmenter, lesion_checkpoint, lesion_margin, outside_lesion, device)
        use_tiles(segmenter, tiles, tile_scale, tile_overlap, tile_batch)
        if data_labels.metric == "isic2018_task1":
            _evaluate_lesion_checkpoint(segmenter, checkpoint, data, subset, json_out, csv_out, device, tta)
        else:
            _evaluate_checkpoint(segmenter, checkpoint, data, subset, json_out, device, tta)
        return
    if pred is None or gt is None:
        raise ConfigError("give --pred PRED_DIR --gt GT_DIR, or --checkpoint CKPT --data DATA_DIR")
    if lesion_checkpoint is not None:
        raise ConfigError("--lesion-checkpoint goes with --checkpoint, not with --pred")
    if tiles or (tile_scale, tile_overlap, tile_batch) != (None, None, None):
        raise ConfigError("--tiles and its settings go with --checkpoint, not with --pred")
    from dermseg.data.layout import label_set_for

    if label_set_for(gt, labels).metric == "isic2018_task1":
        from dermseg.evaluation.task1_folders import evaluate_task1_folders

        with _reported_problems(), _progress() as bar:
            task = bar.add_task("evaluate", total=None)
            result = evaluate_task1_folders(
                pred, gt, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
        title = (
            f"{_shown(pred)} against {_shown(gt)}: official ISIC 2018 Task 1 scores ({result.images} images)"
        )
        _print_task1(title, result, json_out, csv_out)
        return
    from dermseg.evaluation.folders import evaluate_folders, write_csv

    with _reported_problems(), _progress() as bar:
        task = bar.add_task("evaluate", total=None)
        result = evaluate_folders(
            pred, gt, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
    scores = result.to_dict()
    console.print(_scores_table(f"{_shown(pred)} against {_shown(gt)} ({scores['images']} images)", scores))
    _print_per_image(scores)
    if json_out is not None:
        _write_json(json_out, scores)
    if csv_out is not None:
        write_csv(csv_out, result)


@contextmanager
def _reported_problems() -> Iterator[None]:
    """Every problem of an :class:`~dermseg.evaluation.folders.EvaluationError` on its own line, exit 2."""
    from dermseg.evaluation.folders import EvaluationError

    try:
        yield
    except EvaluationError as err:
        for problem in err.problems:
            err_console.print(f"dermseg: error: {problem}", markup=False, highlight=False, soft_wrap=True)
        err_console.print(f"[bold red]{len(err.problems)} problem(s): nothing was scored[/]")
        raise typer.Exit(2) from None


def _checkpoint_samples(
    segmenter: Segmenter, checkpoint: list[Path], data: Path, subset: str
) -> tuple[str, list]:
    """The subset chosen (``auto`` resolved) and its samples, read with the model's label set."""
    from dermseg.evaluation.model import auto_subset, select_samples

    chosen = auto_subset(data, segmenter.labels) if subset == "auto" else subset
    if len(checkpoint) > 1 and chosen == "val":
        raise ConfigError(
            "--subset val is each model's own hold-out; score an ensemble on validation, test or all"
        )
    meta = {"config": segmenter_config(checkpoint[0]), "labels": segmenter.labels.to_meta()}
    return chosen, select_samples(data, chosen, meta)


def _evaluate_checkpoint(
    segmenter: Segmenter,
    checkpoint: list[Path],
    data: Path,
    subset: str,
    json_out: Path | None,
    device: str,
    tta: bool | None,
) -> None:
    """The Task 2 scores of a checkpoint (or an ensemble) on a dataset."""
    from dermseg.evaluation.model import evaluate_checkpoint

    chosen, samples = _checkpoint_samples(segmenter, checkpoint, data, subset)
    with _progress() as bar:
        task = bar.add_task(f"evaluate {chosen}", total=len(samples))
        scores = evaluate_checkpoint(segmenter, samples, progress=lambda k: bar.advance(task, k))
    console.print(
        _scores_table(
            f"{_shown(', '.join(c.name for c in checkpoint))} on {_shown(data)} "
            f"({chosen}: {scores['images']} images, {segmenter.tta_description})",
            scores,
        )
    )
    _print_per_image(scores)
    if json_out is not None:
        extra = {"tta": segmenter.tta, "field": segmenter.field_description}
        _write_json(json_out, {**scores, **extra, "prediction": segmenter.tiling_description})
    if segmenter.lesion_field is None:  # the run's report shows the model as it was trained
        _run_report(checkpoint, data, device, tta)


def _evaluate_lesion_checkpoint(
    segmenter: Segmenter,
    checkpoint: list[Path],
    data: Path,
    subset: str,
    json_out: Path | None,
    csv_out: Path | None,
    device: str,
    tta: bool | None,
) -> None:
    """The official ISIC 2018 Task 1 scores of a lesion checkpoint (or ensemble) on a dataset."""
    from dermseg.evaluation.lesion_model import evaluate_lesion_checkpoint

    chosen, samples = _checkpoint_samples(segmenter, checkpoint, data, subset)
    with _progress() as bar:
        task = bar.add_task(f"evaluate {chosen}", total=len(samples))
        result = evaluate_lesion_checkpoint(segmenter, samples, progress=lambda k: bar.advance(task, k))
    title = (
        f"{_shown(', '.join(c.name for c in checkpoint))} on {_shown(data)}: official ISIC 2018 Task 1 "
        f"scores ({chosen}: {result.images} images, {segmenter.tta_description})"
    )
    _print_task1(title, result, None, csv_out)
    if json_out is not None:
        _write_json(
            json_out, {**result.to_dict(), "tta": segmenter.tta, "prediction": segmenter.tiling_description}
        )
    _run_report(checkpoint, data, device, tta)


def _run_report(checkpoint: list[Path], data: Path, device: str, tta: bool | None) -> None:
    run_dir = checkpoint[0].parent.parent
    in_run = checkpoint[0].parent.name == "checkpoints" and (run_dir / "metrics.jsonl").is_file()
    if len(checkpoint) == 1 and in_run:
        write_run_report(run_dir, data, device, tta=tta)  # the run's report, on its validation split


def _print_per_image(scores: dict) -> None:
    value = scores["per_image_mean_jaccard"]
    value = value["mean"] if isinstance(value, dict) else value
    console.print(f"per-image mean Jaccard (the thesis's number, not the official metric): {value:.4f}")
