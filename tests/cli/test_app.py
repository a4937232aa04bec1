"""Shared CLI helpers (cli/app.py): the progress bar's rate column."""

from __future__ import annotations

import time

from rich.progress import Progress

from dermseg.cli.app import RateColumn


def test_the_rate_column_shows_images_per_second() -> None:
    column = RateColumn("img")
    with Progress(column, disable=True) as bar:
        task = bar.add_task("predict", total=10)
        assert column.render(bar.tasks[0]).plain == "-"  # nothing done yet: no rate
        bar.advance(task, 1)
        time.sleep(0.05)
        bar.advance(task, 4)
        shown = column.render(bar.tasks[0]).plain
    assert shown.endswith(" img/s") and float(shown.split()[0]) > 0
