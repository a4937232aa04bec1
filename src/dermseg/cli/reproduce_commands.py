"""``dermseg reproduce isic2018``: the ISIC 2018 Task 2 benchmark in one resumable command."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer
from rich.progress import TaskID

from dermseg.cli.app import _TrainProgress, app, console, progress_bar
from dermseg.errors import ConfigError

reproduce_app = typer.Typer(help="Reproduce a published benchmark end to end.", no_args_is_help=True)
app.add_typer(reproduce_app, name="reproduce")


class _StageProgress:
    """One line per stage event and one bar per long-running label."""

    def __init__(self) -> None:
        self.bar = progress_bar()
        self.tasks: dict[str, TaskID] = {}

    def stage(self, name: str, state: str, detail: str) -> None:
        colour = {"done": "green", "skipped": "yellow", "finished": "green"}.get(state, "cyan")
        console.print(f"[bold]{name}[/] [{colour}]{state}[/] {detail}", highlight=False, soft_wrap=True)

    def progress(self, label: str, done: int, total: int | None) -> None:
        if label not in self.tasks:
            self.bar.start()
            self.tasks[label] = self.bar.add_task(label, total=total, completed=done)
        else:
            self.bar.update(self.tasks[label], completed=done, total=total)
        if total is not None and done >= total:
            self.bar.remove_task(self.tasks.pop(label))
            if not self.tasks:
                self.bar.stop()


@reproduce_app.command("isic2018")
def isic2018(
    out: Path = typer.Option(..., "--out", help="Run folder (rerun the same command to resume)."),
    data: Path | None = typer.Option(
        None, "--data", help="Dataset folder; missing parts are downloaded into it. Default: OUT/data."
    ),
    config: str = typer.Option("isic2018", "--config", help="Recipe: a YAML file or a built-in name."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config value: key=value (repeatable)."),
    gpus: int = typer.Option(1, "--gpus", min=1, help="GPUs to train on (more than 1 launches torchrun)."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Run the whole chain on a small synthetic ISIC 2018 served from 127.0.0.1."
    ),
    plan_only: bool = typer.Option(
        False, "--plan", help="Print the stages, their state, sizes and time estimates; run nothing."
    ),
    base_url: str | None = typer.Option(None, "--base-url", help="Where to fetch the official archives."),
) -> None:
    """Download, prepare, train, tune, predict and score ISIC 2018 Task 2 with the official metric.

    Model selection and threshold tuning use a stratified hold-out of the training images
    (data.validation: holdout, or k folds), so the official validation and test scores are
    unbiased; a config with data.validation: auto (e.g. seed) is refused.
    """
    from dermseg.config import load_config, resolve_config_path
    from dermseg.reproduce import (
        DRY_RUN_OVERRIDES,
        Hooks,
        Reproduction,
        dry_run_server,
        format_plan,
        plan,
        run,
    )
    from dermseg.reproduce.state import check_selection

    if dry_run and base_url:
        raise ConfigError("--dry-run serves its own archives; leave out --base-url")
    config_path = resolve_config_path(config)
    cfg = load_config(config_path, [*(DRY_RUN_OVERRIDES if dry_run else []), *overrides])
    check_selection(cfg, config_path)  # before anything is written
    data_dir = data or out / "data"
    repro = Reproduction(cfg, data_dir, out, gpus=gpus, device=device, base_url=base_url, dry_run=dry_run)
    if plan_only:
        for line in format_plan(plan(repro), data_dir, out):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    progress = _StageProgress()
    with dry_run_server(out) if dry_run else contextlib.nullcontext(None) as url:
        if url is not None:
            repro.base_url = url
            console.print(f"dry run: synthetic ISIC 2018 archives served at {url}", highlight=False)
        for line in format_plan(plan(repro), data_dir, out):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        hooks = Hooks(stage=progress.stage, progress=progress.progress, train_callbacks=_TrainProgress())
        results = run(repro, hooks)
    for row in results["rows"]:
        console.print(
            f"[bold]{row['split']}[/] ({row['images']} images): official Jaccard "
            f"[bold]{row['official_jaccard']:.4f}[/]" + (" (synthetic dry run)" if dry_run else ""),
            highlight=False,
        )
    console.print(
        f"results: {out / 'RESULTS.md'}; report: {results['report']}", highlight=False, soft_wrap=True
    )
