"""Download commands: ``download isic2018``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import (
    DownloadColumn,
    TaskID,
    TransferSpeedColumn,
)
from rich.table import Table

from dermseg.cli.app import app, console, progress_bar
from dermseg.data.download import ARCHIVES, ISIC2018_URL, archive_names

download_app = typer.Typer(help="Download public datasets.", no_args_is_help=True)
app.add_typer(download_app, name="download")


def _gb(n: int) -> str:
    if n >= 1e8:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _print_plan(names: list[str], dest: Path, base_url: str) -> None:
    table = Table(title=f"ISIC 2018 archives from {base_url}")
    table.add_column("archive", no_wrap=True)
    table.add_column("part")
    table.add_column("contents", overflow="fold")
    table.add_column("approx. size", justify="right")
    for name in names:
        a = ARCHIVES[name]
        table.add_row(a.name, a.part, a.contents, _gb(a.approx_bytes))
    console.print(table)
    total = sum(ARCHIVES[n].approx_bytes for n in names)
    console.print(
        f"about {_gb(total)} to download into {dest} and as much again once extracted "
        "(sizes are approximate; the server's are checked)",
        soft_wrap=True,
    )


class _ByteProgress:
    """One bar per label (archive download or extraction): bytes, speed, time left."""

    def __init__(self) -> None:
        self.bar = progress_bar(DownloadColumn(), TransferSpeedColumn())
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, label: str, done: int, total: int | None) -> None:
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(label, total=total, completed=done)
        else:
            self.bar.update(self.tasks[label], completed=done, total=total)


@download_app.command("isic2018")
def isic2018(
    dest: Path = typer.Option(..., "--dest", help="Folder to download and unzip the archives into."),
    parts: str = typer.Option("train,val,test", "--parts", help="Comma-separated: train, val, test."),
    lesion_masks: bool = typer.Option(False, "--lesion-masks", help="Also the Task 1 lesion masks."),
    base_url: str = typer.Option(ISIC2018_URL, "--base-url", help="Where the archives are published."),
    plan: bool = typer.Option(False, "--plan", help="List the archives and their sizes; download nothing."),
    delete_archives: bool = typer.Option(
        False, "--delete-archives", help="Delete each zip once extracted (saves about as much space)."
    ),
    timeout: float = typer.Option(30.0, "--timeout", min=1.0, help="Seconds to wait for the server."),
) -> None:
    """Download the official ISIC 2018 archives (resumable, verified) and unzip them safely."""
    from dermseg.data.download import download_isic2018

    names = archive_names(parts, lesion_masks)
    if plan:
        _print_plan(names, dest, base_url)
        return
    progress = _ByteProgress()
    with progress.bar:
        result = download_isic2018(
            dest,
            [p.strip() for p in parts.split(",") if p.strip()],
            lesion_masks=lesion_masks,
            base_url=base_url,
            progress=progress,
            timeout=timeout,
            keep_archives=not delete_archives,
        )
    for name in names:
        if name in result.skipped:
            state = "already present, skipped"
        elif name in result.resumed:
            state = "resumed and extracted"
        elif name in result.downloaded:
            state = "downloaded and extracted"
        else:
            state = "extracted (downloaded earlier)"
        console.print(f"{name}: {state}", highlight=False)
    console.print(
        f"{len(result.downloaded)} archive(s) downloaded ({_gb(result.bytes_received)} received), "
        f"{len(result.skipped)} already present; check the data with `dermseg check {dest}`",
        highlight=False,
        soft_wrap=True,
    )
