"""The ``dermseg`` command line: a thin layer over the library.

Library errors (:class:`~dermseg.errors.DermsegError`) become one line on stderr
and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dermseg import __version__
from dermseg.attributes import ATTRIBUTES, DISPLAY_NAMES
from dermseg.errors import ConfigError, DermsegError

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


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        disable=not err_console.is_terminal,
    )


def _write_json(path: Path, data: dict) -> None:
    from dermseg.data.imageio import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Folder to write the dataset into (official ISIC 2018 layout)."),
    n: int = typer.Option(100, "--n", min=1, help="Number of images."),
    size: int = typer.Option(512, "--size", min=64, max=8192, help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
    split: str = typer.Option("training", "--split", help="training, validation or test."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset already in OUT."),
) -> None:
    """Write a synthetic dermoscopy dataset with all five attribute masks."""
    from dermseg.data.synthetic import split_folders, write_dataset

    if out.exists() and not out.is_dir():
        raise DermsegError("is a file, expected a folder to write the dataset into", out)
    try:
        image_dir = out / split_folders(split)[0]
    except ValueError as err:
        raise ConfigError(f"--split: {err}") from None
    if image_dir.is_dir() and any(image_dir.iterdir()) and not overwrite:
        raise DermsegError("already holds a dataset; pass --overwrite to replace it", image_dir)
    with _progress() as bar:
        task = bar.add_task(f"synth {split}", total=n)
        ids = write_dataset(
            out, n=n, size=size, seed=seed, split=split, progress=lambda k: bar.advance(task, k)
        )
    console.print(f"wrote {len(ids)} images and {len(ids) * len(ATTRIBUTES)} masks to {out}")


def _print_report(report_summary: dict) -> None:
    for name, split in report_summary["splits"].items():
        table = Table(title=f"{report_summary['root']} — {name} ({split['images']} images)")
        table.add_column("attribute")
        table.add_column("images with it", justify="right")
        table.add_column("%", justify="right")
        table.add_column("mean area", justify="right")
        table.add_column("mean area when present", justify="right")
        table.add_column("masks found", justify="right")
        for attr in ATTRIBUTES:
            a = split["attributes"][attr]
            lab = a["labelled"]
            table.add_row(
                DISPLAY_NAMES[attr],
                str(a["present"]),
                f"{100 * a['present'] / lab:.1f}" if lab else "-",
                f"{a['mean_area']:.4f}" if a["mean_area"] is not None else "-",
                f"{a['mean_area_when_present']:.4f}" if a["mean_area_when_present"] is not None else "-",
                f"{lab}/{split['images']}",
            )
        console.print(table)
        console.print(
            f"images with no attribute: {split['images_without_attribute']} "
            f"(of {split['fully_labelled_images']} with all five masks)"
        )
        sizes = split["sizes"]
        if sizes:
            common = ", ".join(f"{c['size']} ({c['count']})" for c in sizes["most_common"])
            console.print(
                f"image sizes: width {sizes['width']['min']}-{sizes['width']['max']} "
                f"(median {sizes['width']['median']:g}), "
                f"height {sizes['height']['min']}-{sizes['height']['max']} "
                f"(median {sizes['height']['median']:g}); most common: {common}"
            )


@app.command()
def check(
    data: Path = typer.Argument(..., help="Dataset folder: official layout, flat folder, or images only."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the summary and problems as JSON."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Decoding threads (default: CPU count)."
    ),
) -> None:
    """Validate a dataset: open every file, report every problem, summarise. Exit 2 on problems."""
    from dermseg.data.check import check_dataset
    from dermseg.data.layout import discover

    total = len(discover(data).samples)
    with _progress() as bar:
        task = bar.add_task("check", total=total)
        report = check_dataset(data, workers=workers, progress=lambda k: bar.advance(task, k))
    summary = report.summary()
    _print_report(summary)
    if json_out is not None:
        _write_json(json_out, summary)
    if report.problems:
        err_console.print(f"[bold red]{len(report.problems)} problem(s) found:[/]")
        for problem in report.problems:
            err_console.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    console.print("[green]no problems found[/]")


@app.command()
def split(
    data: Path = typer.Argument(..., help="Dataset folder with training masks."),
    out: Path = typer.Option(..., "--out", help="JSON file to write the train/val ids to."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.01, max=0.9, help="Share held out."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Write a train/validation split: the official one when present, else stratified on attributes."""
    from dermseg.data.splits import split_layout

    result = split_layout(data, val_fraction=val_fraction, seed=seed)
    _write_json(out, result.to_dict())
    console.print(f"{result.source} split: {len(result.train)} train, {len(result.val)} val -> {out}")


class _TrainProgress:
    """Rich progress bar for training: loss, images/s and ETA per epoch; one line per epoch."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:.1f} img/s"),
            TimeRemainingColumn(),
            console=err_console,
            disable=not err_console.is_terminal,
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
        console.print(
            f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}"
            + (f"  val loss {record['val_loss']:.4f}" if "val_loss" in record else "")
            + jac
            + f"  ({record['images_per_s']:.1f} img/s)"
        )


@app.command()
def train(
    data: Path | None = typer.Option(None, "--data", help="Dataset folder (official layout or flat folder)."),
    out: Path | None = typer.Option(None, "--out", help="Run folder to create."),
    config: str | None = typer.Option(None, "--config", help="YAML config file, or seed / isic2018 / demo."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config value: key=value (repeatable)."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue the interrupted run in this folder."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
) -> None:
    """Train a model, validating every epoch with the official metric (multi-GPU: torchrun)."""
    from dermseg.config import load_config, resolve_config_path
    from dermseg.train import resume_config
    from dermseg.train import train as run_training

    if resume is not None:
        cfg = resume_config(resume, overrides)
        out = resume
    else:
        if out is None:
            raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR)")
        if (out / "checkpoints" / "last_state.pt").exists():
            raise ConfigError(
                "already holds a training run; use --resume to continue it or choose another --out", out
            )
        cfg = load_config(resolve_config_path(config) if config else None, overrides)
    data_dir = data or (Path(cfg.data.root) if cfg.data.root else None)
    if data_dir is None:
        raise ConfigError("--data DATA_DIR is required (or data.root in the config)")
    result = run_training(
        cfg, data_dir, out, resume=resume is not None, callbacks=_TrainProgress(), device=device
    )
    console.print(
        f"best official Jaccard {result.get('best_jaccard', float('nan')):.4f} "
        f"at epoch {result.get('best_epoch')}; "
        f"checkpoint {out / 'checkpoints' / 'best.safetensors'}"
    )


@app.command()
def demo(
    out: Path = typer.Option(
        Path("demo_run"), "--out", help="Folder for data, run, predictions and overlays."
    ),
    minutes: float = typer.Option(4.0, "--minutes", min=0.1, help="Training time budget (CPU minutes)."),
    config: str = typer.Option("demo", "--config", help="Config (default: the shipped demo.yaml)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config value: key=value."),
    n_train: int = typer.Option(240, "--n-train", min=4, help="Synthetic training images."),
    image_size: int = typer.Option(256, "--image-size", min=96, help="Synthetic image side."),
) -> None:
    """The main job: synthesise data, train for a few minutes, evaluate with the official metric, predict."""
    from dermseg.config import load_config, resolve_config_path
    from dermseg.demo import DemoSizes, run_demo

    if out.exists() and any(out.iterdir()):
        raise ConfigError("already exists and is not empty; choose another --out or remove it", out)
    cfg = load_config(resolve_config_path(config), [f"train.max_minutes={minutes}", *overrides])
    console.print(
        f"dermseg demo: {cfg.model.arch} ({cfg.model.encoder_name} encoder, ASPP {cfg.model.aspp_rates}), "
        f"{n_train} synthetic training images, {minutes:g} min of training on "
        f"{'CUDA' if __import__('torch').cuda.is_available() else 'CPU'}"
    )
    held_out = max(4, n_train // 6)
    sizes = DemoSizes(train=n_train, val=held_out, test=held_out, image_size=image_size)
    summary = run_demo(out, cfg, sizes, callbacks=_TrainProgress())
    j = summary["official_jaccard"]
    table = Table(
        title=f"Official ISIC 2018 Task 2 Jaccard on {summary['test_images']} held-out synthetic images"
    )
    table.add_column("model")
    table.add_column("Jaccard", justify="right")
    table.add_row(f"trained ({summary['training'].get('epoch', 0) + 1} epochs)", f"{j['trained']:.4f}")
    table.add_row("same network, untrained", f"{j['untrained']:.4f}")
    table.add_row("empty prediction", f"{j['empty_prediction']:.4f}")
    console.print(table)
    per = summary["per_attribute_jaccard_trained"]
    console.print(
        "per attribute (trained): " + ", ".join(f"{DISPLAY_NAMES[a]} {per[a]:.3f}" for a in ATTRIBUTES)
    )
    for name, path in summary["paths"].items():
        console.print(f"  {name:12s} {path}")
    console.print("[dim]Synthetic data: these numbers say nothing about accuracy on real lesions.[/]")


@app.command()
def prepare(
    data: Path = typer.Argument(..., help="Dataset folder (official layout or flat folder)."),
    out: Path = typer.Option(..., "--out", help="Cache folder to create or update."),
    size: int = typer.Option(
        512, "--size", min=32, max=8192, help="Short side of the cached images (= data.size)."
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Processes (default: CPU count)."),
    no_crop: bool = typer.Option(False, "--no-background-crop", help="Keep the dermoscope border."),
) -> None:
    """Decode, background-crop and resize every image once into a fast cache; train with data.cache=DIR."""
    from dermseg.data.cache import prepare_cache

    with _progress() as bar:
        task = bar.add_task("prepare", total=None)
        manifest = prepare_cache(
            data,
            out,
            size,
            workers=workers,
            crop_background=not no_crop,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(
        f"cache {out}: {len(manifest.rebuilt)} image(s) decoded this time"
        + (" (nothing changed)" if not manifest.rebuilt else "")
        + f"; train with --set data.cache={out} --set data.size={size}"
    )


@app.command()
def predict(
    inputs: list[Path] = typer.Argument(..., help="Images and/or folders of images."),
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="A dermseg .safetensors checkpoint, or a .onnx model from `dermseg export`."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the masks (ISIC submission naming)."),
    overlays: bool = typer.Option(False, "--overlays", help="Also write image | prediction overlays."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write 16-bit probability maps."),
    tta: bool = typer.Option(False, "--tta", help="Average with flipped predictions."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    backend: str | None = typer.Option(
        None,
        "--backend",
        help="torch or onnxruntime (default: torch; onnxruntime for a .onnx model). "
        "onnxruntime with a .safetensors checkpoint exports it to ONNX first.",
    ),
) -> None:
    """Write the five masks of every image (0/255 PNG, image size); a bad image is reported, not fatal."""
    from dermseg.predict import Segmenter
    from dermseg.predict_folder import collect_images, predict_images

    images = collect_images(inputs)
    segmenter = Segmenter.from_path(checkpoint, backend=backend, device=device, tta=tta)
    with _progress() as bar:
        task = bar.add_task("predict", total=len(images))
        report = predict_images(
            segmenter,
            images,
            out,
            overlays=overlays,
            probabilities=probabilities,
            progress=lambda k: bar.advance(task, k),
        )
    console.print(f"wrote masks of {len(report.written)} image(s) to {out}")
    if report.failed:
        for path, message in report.failed:
            err_console.print(f"{path}: {message}", markup=False, highlight=False, soft_wrap=True)
        err_console.print(f"[bold red]{len(report.failed)} of {len(images)} image(s) failed[/]")
        raise typer.Exit(2)


@app.command()
def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A dermseg .safetensors checkpoint."),
    out: Path = typer.Option(..., "--out", help="The .onnx file to write."),
    opset: int = typer.Option(17, "--opset", min=13, help="ONNX opset version."),
    static: bool = typer.Option(False, "--static", help="Fixed 1x3x97x130 input, no dynamic axes."),
) -> None:
    """Export a checkpoint to ONNX: normalised (B, 3, H, W) image -> (B, 5, H, W) probabilities."""
    from dermseg.export import export_onnx

    path = export_onnx(checkpoint, out, opset=opset, dynamic=not static)
    console.print(
        f"wrote {path}: input 'image' (B, 3, H, W) float32, normalised; "
        "output 'probabilities' (B, 5, H, W); description in its metadata"
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


@app.command()
def evaluate(
    pred: Path | None = typer.Option(None, "--pred", help="Folder of predicted masks (submission naming)."),
    gt: Path | None = typer.Option(None, "--gt", help="Folder of ground-truth masks."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Run this checkpoint instead of --pred."
    ),
    data: Path | None = typer.Option(None, "--data", help="Dataset to run the checkpoint on."),
    subset: str = typer.Option("auto", "--subset", help="auto, val, test or all (with --checkpoint)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the scores as JSON."),
    csv_out: Path | None = typer.Option(
        None, "--csv", help="Write per-attribute scores as CSV (with --pred)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (with --checkpoint)."),
    tta: bool = typer.Option(False, "--tta", help="Flip test-time augmentation (with --checkpoint)."),
) -> None:
    """Score masks with the official ISIC 2018 Task 2 metric: a prediction folder, or a checkpoint on data."""
    if checkpoint is not None:
        if data is None or pred is not None:
            raise ConfigError("--checkpoint needs --data (and no --pred)")
        from dermseg.evaluate_model import auto_subset, evaluate_checkpoint, select_samples
        from dermseg.predict import Segmenter

        segmenter = Segmenter.from_checkpoint(checkpoint, device=device, tta=tta)
        chosen = auto_subset(data) if subset == "auto" else subset
        samples = select_samples(data, chosen, {"config": segmenter_config(checkpoint)})
        with _progress() as bar:
            task = bar.add_task(f"evaluate {chosen}", total=len(samples))
            scores = evaluate_checkpoint(segmenter, samples, progress=lambda k: bar.advance(task, k))
        console.print(
            _scores_table(f"{checkpoint.name} on {data} ({chosen}: {scores['images']} images)", scores)
        )
        _print_per_image(scores)
        if json_out is not None:
            _write_json(json_out, scores)
        return
    if pred is None or gt is None:
        raise ConfigError("give --pred PRED_DIR --gt GT_DIR, or --checkpoint CKPT --data DATA_DIR")
    from dermseg.evaluate import EvaluationError, evaluate_folders, write_csv

    try:
        with _progress() as bar:
            task = bar.add_task("evaluate", total=None)
            result = evaluate_folders(
                pred, gt, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    except EvaluationError as err:
        for problem in err.problems:
            err_console.print(f"{problem}", markup=False, highlight=False, soft_wrap=True)
        err_console.print(f"[bold red]{len(err.problems)} problem(s): nothing was scored[/]")
        raise typer.Exit(2) from None
    scores = result.to_dict()
    console.print(_scores_table(f"{pred} against {gt} ({scores['images']} images)", scores))
    _print_per_image(scores)
    if json_out is not None:
        _write_json(json_out, scores)
    if csv_out is not None:
        write_csv(csv_out, result)


def _print_per_image(scores: dict) -> None:
    value = scores["per_image_mean_jaccard"]
    value = value["mean"] if isinstance(value, dict) else value
    console.print(f"per-image mean Jaccard (the thesis's number, not the official metric): {value:.4f}")


def segmenter_config(checkpoint: Path) -> dict:
    """The training config stored in a checkpoint (for the validation split it was selected on)."""
    from dermseg.checkpoint import read_meta

    return read_meta(checkpoint).get("config") or {}


@app.command()
def tune(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="The checkpoint to tune."),
    data: Path = typer.Option(..., "--data", help="Dataset; its validation split is used (see --subset)."),
    subset: str = typer.Option("val", "--subset", help="val (default) or all; never tune on the test set."),
    out: Path | None = typer.Option(
        None, "--out", help="Write the tuned checkpoint here (default: in place)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the tuning report as JSON."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
) -> None:
    """Tune per-attribute thresholds for the official Jaccard; report each post-processing step's effect."""
    from dermseg.checkpoint import update_checkpoint_meta
    from dermseg.evaluate_model import select_samples, tune_checkpoint
    from dermseg.postprocess import PostprocessSettings
    from dermseg.predict import Segmenter

    if subset not in ("val", "all"):
        raise ConfigError("--subset must be val or all: tuning on the test set would leak it into the score")
    segmenter = Segmenter.from_checkpoint(checkpoint, device=device)
    samples = select_samples(data, subset, {"config": segmenter_config(checkpoint)})
    thresholds_only = PostprocessSettings(thresholds=segmenter.postprocess.thresholds)
    passes = 1 if segmenter.postprocess == thresholds_only else 2  # a second pass scores the steps
    with _progress() as bar:
        task = bar.add_task("tune", total=len(samples) * passes)
        report = tune_checkpoint(segmenter, samples, progress=lambda k: bar.advance(task, k))
    table = Table(title=f"Threshold tuning on {report['images']} {subset} images (official Jaccard)")
    table.add_column("attribute")
    table.add_column("threshold", justify="right")
    table.add_column("Jaccard", justify="right")
    for a, t in zip(ATTRIBUTES, report["thresholds"], strict=True):
        table.add_row(DISPLAY_NAMES[a], f"{t:.2f}", f"{report['per_attribute_tuned'][a]:.4f}")
    console.print(table)
    console.print(
        f"overall: {report['overall_at_default']:.4f} at 0.5 -> {report['overall_tuned']:.4f} tuned"
    )
    for step in report["steps"]:
        console.print(f"  {step['step']:28s} overall {step['overall']:.4f}")
    target = update_checkpoint_meta(
        checkpoint,
        {
            "postprocess": report["settings"],
            "thresholds": report["thresholds"],
            "tuning": {k: report[k] for k in ("overall_at_default", "overall_tuned", "steps", "images")}
            | {"subset": subset},
        },
        out,
    )
    console.print(f"tuned settings written to {target}")
    if json_out is not None:
        _write_json(json_out, report)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by tests and by the ``dermseg`` script).

    Usage errors (unknown option, missing argument) are reported by the command-line parser
    with exit code 2; :class:`DermsegError` becomes one line on stderr and exit code 2.
    """
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
        where = f"{err.filename}: " if err.filename else ""
        print(f"dermseg: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dermseg: interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":  # python -m dermseg.cli (used under torchrun)
    run()
