"""Training commands: ``train``, ``demo``, ``tune``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from dermseg.attributes import ATTRIBUTES, DISPLAY_NAMES
from dermseg.cli.app import (
    _progress,
    _TrainProgress,
    _write_json,
    app,
    console,
    model_on_data,
    segmenter_config,
    task1_table,
    write_run_report,
)
from dermseg.errors import ConfigError, display_path

if TYPE_CHECKING:
    from dermseg.config import Config


@app.command()
def train(
    data: Path | None = typer.Option(None, "--data", help="Dataset folder (official layout or flat folder)."),
    out: Path | None = typer.Option(None, "--out", help="Run folder to create."),
    config: str | None = typer.Option(
        None, "--config", help="YAML config file, or seed / isic2018 / demo / lesion."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override a config value: key=value (repeatable)."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue the interrupted run in this folder."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of initialisation, order and augmentation."),
    deterministic: bool = typer.Option(
        False, "--deterministic", help="Deterministic kernels: bit-identical CPU reruns (slower on GPU)."
    ),
) -> None:
    """Train a model, validating every epoch with the official metric (multi-GPU: torchrun).

    A killed run continues where it stopped with --resume RUN_DIR (bit-identical on CPU
    with --deterministic); train.checkpoint_every=N also saves within an epoch.
    """
    from dermseg.config import check_value, load_config, resolve_config_path
    from dermseg.training.loop import resume_config
    from dermseg.training.loop import train as run_training

    if seed is not None:
        check_value("seed", seed, "--seed")  # named as given, not as the --set it becomes
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
        overrides_given = [*overrides]
        if seed is not None:
            overrides_given.append(f"seed={seed}")
        if deterministic:
            overrides_given.append("deterministic=true")
        cfg = load_config(resolve_config_path(config) if config else None, overrides_given)
    data_dir = data or (Path(cfg.data.root) if cfg.data.root else None)
    if data_dir is None:
        raise ConfigError("--data DATA_DIR is required (or data.root in the config)")
    if resume is None:
        cfg.data.root = str(Path(data_dir).resolve())  # recorded, so --resume needs no --data
        if Path(cfg.data.labels).suffix.lower() in (".yaml", ".yml"):  # a label set file, likewise
            cfg.data.labels = str(Path(cfg.data.labels).resolve())
    result = run_training(
        cfg, data_dir, out, resume=resume is not None, callbacks=_TrainProgress(), device=device
    )
    from dermseg.config import config_label_set

    labels = config_label_set(cfg)
    score = "mean Jaccard (Task 1)" if labels.metric == "isic2018_task1" else "official Jaccard"
    console.print(
        f"best {score} {result.get('best_jaccard', float('nan')):.4f} "
        f"at epoch {result.get('best_epoch')}; "
        f"checkpoint {display_path(out / 'checkpoints' / 'best.safetensors')}",
        markup=False,
        highlight=False,
    )
    write_run_report(out, data_dir, device)


#: What ``dermseg demo --task`` can show.
DEMO_TASKS: tuple[str, ...] = ("structures", "lesion")


@app.command()
def demo(
    out: Path = typer.Option(
        Path("demo_run"), "--out", help="Folder for data, run, predictions and overlays."
    ),
    minutes: float = typer.Option(4.0, "--minutes", min=0.1, help="Training time budget (CPU minutes)."),
    task: str = typer.Option(
        "structures",
        "--task",
        help="structures: the five ISIC 2018 Task 2 structures on synthetic images (default); "
        "lesion: lesion segmentation on the PH2 images given with --data, scored with the ISIC 2018 "
        "Task 1 metric.",
    ),
    data: Path | None = typer.Option(
        None, "--data", help="The PH2 database (distributed or flat form), for --task lesion."
    ),
    config: str | None = typer.Option(
        None, "--config", help="Config (default: the shipped demo.yaml; lesion.yaml for --task lesion)."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override a config value: key=value."),
    n_train: int = typer.Option(240, "--n-train", min=4, help="Synthetic training images."),
    image_size: int = typer.Option(256, "--image-size", min=96, help="Synthetic image side."),
) -> None:
    """The main job: train for a few minutes, evaluate with the official metric, predict. By default
    on synthetic images (Task 2); with --task lesion --data PH2_DIR on real PH2 images (Task 1)."""
    from dermseg.config import load_config, resolve_config_path

    if task not in DEMO_TASKS:
        raise ConfigError(f"--task must be one of {', '.join(DEMO_TASKS)}, got {task!r}")
    if task == "lesion" and data is None:
        raise ConfigError(
            "--task lesion needs the PH2 images: give --data PH2_DIR (the PH2 database, "
            "distributed or flat form)"
        )
    if task == "structures" and data is not None:
        raise ConfigError("--data is for --task lesion; the structures demo makes its own synthetic images")
    if out.exists() and any(out.iterdir()):
        raise ConfigError("already exists and is not empty; choose another --out or remove it", out)
    chosen = config or ("lesion" if task == "lesion" else "demo")
    cfg = load_config(resolve_config_path(chosen), [f"train.max_minutes={minutes}", *overrides])
    if data is not None:  # --task lesion
        _lesion_demo(out, data, cfg, minutes)
        return
    from dermseg.demo import DemoSizes, run_demo

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


def _lesion_demo(out: Path, data: Path, cfg: Config, minutes: float) -> None:
    """``dermseg demo --task lesion``: train on PH2, print the official Task 1 scores of held-out images."""
    import torch

    from dermseg.demo import run_lesion_demo

    console.print(
        f"dermseg demo --task lesion: {cfg.model.arch} ({cfg.model.encoder_name} encoder), PH2 images of "
        f"{display_path(data)} split stratified on the diagnosis, {minutes:g} min of training on "
        f"{'CUDA' if torch.cuda.is_available() else 'CPU'}",
        markup=False,
        highlight=False,
    )
    summary = run_lesion_demo(out, data, cfg, callbacks=_TrainProgress())
    scores = summary["scores"]
    split = summary["split"]
    title = (
        f"Official ISIC 2018 Task 1 scores on {scores['images']} held-out PH2 images "
        f"(trained on {len(split['train'])}, {summary['training'].get('epoch', 0) + 1} epochs)"
    )
    console.print(task1_table(title, scores))
    counts = ", ".join(f"{d.replace('_', ' ')} {n}" for d, n in split["diagnoses"]["test"].items())
    console.print(f"held-out images by diagnosis: {counts}", markup=False, highlight=False)
    for name, path in summary["paths"].items():
        console.print(f"  {name:12s} {path}", markup=False, highlight=False)


@app.command()
def tune(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="The checkpoint to tune."),
    data: Path = typer.Option(..., "--data", help="Dataset; its validation split is used (see --subset)."),
    subset: str = typer.Option(
        "val",
        "--subset",
        help="val (default: the split the checkpoint was selected on) or validation (the official "
        "validation folder). Never test or all: they hold the test images and the training images.",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write the tuned checkpoint here (default: in place)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the tuning report as JSON."),
    labels_option: str | None = typer.Option(
        None,
        "--labels",
        help="Label set of the data (default: told from the folder's names); a checkpoint of another "
        "set is refused.",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    tta: bool | None = typer.Option(
        None,
        "--tta/--no-tta",
        help="Tune with flip TTA on or off (default: as the checkpoint's thresholds were tuned; "
        "an untuned checkpoint: its recipe's predict.tta). Stored with the thresholds: prediction "
        "then uses the same setting by default.",
    ),
) -> None:
    """Tune per-label thresholds for the official metric; report each post-processing step's effect.

    The checkpoint's label set says which: the Task 2 Jaccard (pooled over images), or for a
    lesion the mean per-image Jaccard (ISIC 2018 Task 1).
    """
    from dermseg.evaluation.model import tune_and_store, tuning_samples
    from dermseg.inference.segmenter import Segmenter
    from dermseg.models.checkpoint import read_meta

    segmenter = Segmenter.from_checkpoint(checkpoint, device=device, tta=tta)
    meta = read_meta(checkpoint)
    labels = segmenter.labels  # a checkpoint without one: the Task 2 attributes
    model_on_data(segmenter, checkpoint, data, labels_option)
    config = segmenter_config(checkpoint)
    if tta is None and segmenter.tuned_tta is None:  # never tuned: as its recipe predicts
        segmenter.tta = bool((config.get("predict") or {}).get("tta", False))
    samples = tuning_samples(data, subset, {"config": config, "labels": meta.get("labels")})
    settings = segmenter.postprocess.to_dict()
    steps_off = all(not any(settings[name]) for name in ("opening", "min_area", "presence"))
    passes = 1 if steps_off else 2  # a second pass scores the steps
    with _progress() as bar:
        task = bar.add_task("tune", total=len(samples) * passes)
        report, target = tune_and_store(
            segmenter,
            checkpoint,
            samples,
            subset=subset,
            out=out,
            progress=lambda k: bar.advance(task, k),
            labels=labels,
        )
    task1 = labels.metric == "isic2018_task1"
    table = Table(
        title=f"Threshold tuning on {report['images']} {subset} images "
        f"({'mean per-image Jaccard' if task1 else 'official Jaccard'}), "
        f"flip TTA {'on' if segmenter.tta else 'off'}"
    )
    table.add_column("label" if labels.name != "isic2018_task2" else "attribute")
    table.add_column("threshold", justify="right")
    table.add_column("Jaccard", justify="right")
    for a, t in zip(labels.names, report["thresholds"], strict=True):
        table.add_row(labels.display_names[a], f"{t:.2f}", f"{report['per_attribute_tuned'][a]:.4f}")
    console.print(table)
    console.print(
        f"overall: {report['overall_at_default']:.4f} at 0.5 -> {report['overall_tuned']:.4f} tuned"
    )
    if task1:
        console.print(
            f"official Task 1 (thresholded Jaccard): {report['threshold_jaccard_at_default']:.4f} at 0.5 "
            f"-> {report['threshold_jaccard_tuned']:.4f} tuned"
        )
    for step in report["steps"]:
        console.print(f"  {step['step']:28s} overall {step['overall']:.4f}")
    console.print(f"tuned settings written to {target}")
    if json_out is not None:
        _write_json(json_out, report)
