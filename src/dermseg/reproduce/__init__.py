"""One command to reproduce the ISIC 2018 Task 2 benchmark (see :mod:`dermseg.reproduce.pipeline`)."""

from dermseg.reproduce.dry_run import DRY_RUN_OVERRIDES, dry_run_server
from dermseg.reproduce.pipeline import Hooks, Reproduction, plan, results_markdown, run
from dermseg.reproduce.plan import format_plan

__all__ = [
    "DRY_RUN_OVERRIDES",
    "Hooks",
    "Reproduction",
    "dry_run_server",
    "format_plan",
    "plan",
    "results_markdown",
    "run",
]
