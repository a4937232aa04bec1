"""Dataset commands: ``synth``, ``check``, ``split``, ``prepare``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dermseg.attributes import ATTRIBUTES
from dermseg.cli.app import MAX_ASPECT_OPTION, _progress, _write_json, app, console, err_console
from dermseg.errors import ConfigError, DermsegError, display_path
from dermseg.labels import DEFAULT, LabelSet

_LABELS_HELP = (
    "Label set: isic2018_task2, isic2018_task1, ph2, or a label set YAML file; "
    "default: told from the folder (PH2, Task 1 or Task 2 masks), else isic2018_task2."
)


def _shown(path: str | Path) -> str:
    """A user's path in rich output: odd bytes escaped, brackets not taken for markup."""
    return escape(display_path(path))


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Folder to write the dataset into (official ISIC 2018 layout)."),
    n: int = typer.Option(100, "--n", min=1, help="Number of images."),
    size: int = typer.Option(512, "--size", min=64, max=8192, help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
    split: str = typer.Option("training", "--split", help="training, validation or test."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset already in OUT."),
    lesion_masks: bool = typer.Option(
        False,
        "--lesion-masks",
        help="Also write the Task 1 lesion masks (ISIC2018_Task1_<Split>_GroundTruth/"
        "ISIC_<id>_segmentation.png), for lesion models, data.field=lesion and augment.lesion_crop.",
    ),
    look: str = typer.Option(
        "classic",
        "--look",
        help="classic (hand-picked colours, the default) or real (skin and lesion colours sampled from "
        "statistics of real PH2 photographs, polarised/non-polarised looks, bubbles, glints, rulers, ink, "
        "soft vignettes, wider blur/noise/JPEG ranges).",
    ),
) -> None:
    """Write a synthetic dermoscopy dataset with all five attribute masks (and, optionally, lesion masks)."""
    from dermseg.config import check_value
    from dermseg.data.synthetic import LOOKS, SynthConfig, split_folders, write_dataset

    check_value("seed", seed, "--seed")
    if look not in LOOKS:
        raise ConfigError(f"--look: expected one of {', '.join(LOOKS)}, got {look!r}")
    config = SynthConfig.real() if look == "real" else None

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
            out,
            n=n,
            size=size,
            seed=seed,
            split=split,
            progress=lambda k: bar.advance(task, k),
            lesion_masks=lesion_masks,
            config=config,
        )
    masks = len(ids) * (len(ATTRIBUTES) + int(lesion_masks))
    console.print(f"wrote {len(ids)} images and {masks} masks to {_shown(out)}")


def _labels(data: Path, labels: str | None) -> LabelSet:
    """The label set a command reads ``data`` with (``--labels``, else told from the folder)."""
    from dermseg.data.layout import label_set_for

    return label_set_for(data, labels)


def _print_report(report_summary: dict, labels: LabelSet = DEFAULT) -> None:
    task2 = labels == DEFAULT
    word = "attribute" if task2 else "label"
    if not task2:
        strata = report_summary.get("strata")
        counts = ", ".join(f"{k} {v}" for k, v in strata["counts"].items()) if strata else ""
        console.print(f"label set {labels.name}" + (f"; {strata['name']}: {counts}" if strata else ""))
    for name, split in report_summary["splits"].items():
        table = Table(title=f"{_shown(report_summary['root'])} — {name} ({split['images']} images)")
        table.add_column(word)
        table.add_column("images with it", justify="right")
        table.add_column("%", justify="right")
        table.add_column("mean area", justify="right")
        table.add_column("mean area when present", justify="right")
        table.add_column("masks found", justify="right")
        for attr in labels.names:
            a = split["attributes"][attr]
            lab = a["labelled"]
            table.add_row(
                _shown(labels.display_names[attr]),
                str(a["present"]),
                f"{100 * a['present'] / lab:.1f}" if lab else "-",
                f"{a['mean_area']:.4f}" if a["mean_area"] is not None else "-",
                f"{a['mean_area_when_present']:.4f}" if a["mean_area_when_present"] is not None else "-",
                f"{lab}/{split['images']}",
            )
        console.print(table)
        every = "all five masks" if task2 else ("its mask" if labels.num_labels == 1 else "every mask")
        console.print(
            f"images with no {word}: {split['images_without_attribute']} "
            f"(of {split['fully_labelled_images']} with {every})"
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
    data: Path = typer.Argument(
        ..., help="Dataset folder: official layout, flat folder, PH2 folder, or images only."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the summary and problems as JSON."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Decoding threads (default: CPU count)."
    ),
    labels: str | None = typer.Option(None, "--labels", help=_LABELS_HELP),
) -> None:
    """Validate a dataset: open every file, report every problem, summarise. Exit 2 on problems."""
    from dermseg.data.check import check_dataset
    from dermseg.data.layout import discover

    label_set = _labels(data, labels)
    layout = discover(data, label_set)
    with _progress() as bar:
        task = bar.add_task("check", total=len(layout.samples))
        report = check_dataset(
            data, workers=workers, progress=lambda k: bar.advance(task, k), labels=label_set, layout=layout
        )
    summary = report.summary()
    _print_report(summary, label_set)
    if json_out is not None:
        _write_json(json_out, summary)
    if report.problems:
        err_console.print(f"[bold red]{len(report.problems)} problem(s) found:[/]")
        for problem in report.problems:
            err_console.print(f"dermseg: error: {problem}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    console.print("[green]no problems found[/]")


@app.command()
def split(
    data: Path = typer.Argument(..., help="Dataset folder with training masks."),
    out: Path = typer.Option(..., "--out", help="JSON file to write the train/val ids to."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.01, max=0.9, help="Share held out."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    labels: str | None = typer.Option(None, "--labels", help=_LABELS_HELP),
) -> None:
    """Write a train/validation split: the official one when present, else stratified (on the
    labels' presence, or on PH2's diagnosis)."""
    from dermseg.config import check_value
    from dermseg.data.splits import split_layout

    check_value("data.split_seed", seed, "--seed")
    result = split_layout(data, val_fraction=val_fraction, seed=seed, labels=_labels(data, labels))
    _write_json(out, result.to_dict())
    console.print(f"{result.source} split: {len(result.train)} train, {len(result.val)} val -> {_shown(out)}")


@app.command()
def prepare(
    data: Path = typer.Argument(..., help="Dataset folder (official layout, flat folder or PH2 folder)."),
    out: Path = typer.Option(..., "--out", help="Cache folder to create or update."),
    size: int = typer.Option(
        512, "--size", min=32, max=8192, help="Short side of the cached images (= data.size)."
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Processes (default: CPU count)."),
    no_crop: bool = typer.Option(False, "--no-background-crop", help="Keep the dermoscope border."),
    labels: str | None = typer.Option(None, "--labels", help=_LABELS_HELP),
    max_aspect_ratio: float = MAX_ASPECT_OPTION,
) -> None:
    """Decode, background-crop and resize every image once into a fast cache; train with data.cache=DIR."""
    from dermseg.data.cache import prepare_cache
    from dermseg.data.shape_limits import ShapeLimits

    label_set = _labels(data, labels)
    with _progress() as bar:
        task = bar.add_task("prepare", total=None)
        manifest = prepare_cache(
            data,
            out,
            size,
            workers=workers,
            crop_background=not no_crop,
            labels=label_set,
            limits=ShapeLimits(max_aspect_ratio),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(
        f"cache {_shown(out)}: {len(manifest.rebuilt)} image(s) decoded this time"
        + (
            f" ({len(manifest.damaged)} damaged in the cache, e.g. {manifest.damaged[0]})"
            if manifest.damaged
            else ""
        )
        + (" (nothing changed)" if not manifest.rebuilt else "")
        + f"; train with --set data.cache={_shown(out)} --set data.size={size}"
    )
