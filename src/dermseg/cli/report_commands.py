"""Report command: ``report``."""

from __future__ import annotations

from pathlib import Path

import typer

from dermseg.cli.app import _progress, app, console
from dermseg.errors import ConfigError


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A training run folder (dermseg train --out)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="The HTML file to write (default RUN_DIR/report.html; its data goes beside it as .json).",
    ),
    data: Path | None = typer.Option(None, "--data", help="Dataset folder (default: the run's data.root)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda, for the evaluation pass."),
    tta: bool | None = typer.Option(
        None,
        "--tta/--no-tta",
        help="Flip TTA in the evaluation pass, on or off (default: as the checkpoint's thresholds "
        "were tuned). The report says which was used.",
    ),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Redraw the page from the report's .json without running the model."
    ),
) -> None:
    """Write a self-contained HTML report of a run: scores vs the 2018 leaderboard, curves, a gallery."""
    from dermseg.report import rebuild_report, write_report

    if rebuild:
        if tta is not None:
            raise ConfigError(
                "--rebuild redraws the saved report without the model; leave out --tta/--no-tta"
            )
        path = rebuild_report(run_dir, out)
    else:
        with _progress() as bar:
            task = bar.add_task("report: evaluate", total=None)
            path = write_report(
                run_dir,
                out,
                data=data,
                device=device,
                tta=tta,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {path.with_suffix('.json').name}")
