"""Writing a run report: ``report.html`` and, beside it, ``report.json`` to rebuild it from.

:func:`write_report` evaluates the run's best checkpoint on its validation split and writes
both files; :func:`rebuild_report` draws the page again from ``report.json`` alone (no model,
no data), e.g. after a change to the page's layout. Both files are written atomically, and
only once everything has been computed: an error leaves no file behind (and an older report
as it was).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dermseg.errors import ConfigError, DataError
from dermseg.files import atomic_path
from dermseg.report.collect import REPORT_FORMAT, RunFiles, checkpoint_fingerprint, collect_report
from dermseg.report.figures import all_figures
from dermseg.report.html import render_html
from dermseg.report.lesion_html import render_lesion_html

logger = logging.getLogger(__name__)


def report_paths(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """``(html, json)`` paths: ``out`` (default ``RUN_DIR/report.html``) and the same name in ``.json``.

    Raises:
        ConfigError: ``out`` is a folder or a ``.json`` file.
    """
    html_path = Path(out) if out is not None else Path(run_dir) / "report.html"
    if html_path.is_dir():
        raise ConfigError("is a folder; give the HTML file to write", html_path)
    if html_path.suffix.lower() == ".json":
        raise ConfigError("the report is HTML (its data goes to the .json beside it); use .html", html_path)
    return html_path, html_path.with_suffix(".json")


def render_page(content: dict[str, Any]) -> str:
    """The report page of ``content``: a lesion run's (label sets scored with the Task 1 metric)
    or a Task 2 run's."""
    labels = content.get("labels") or {}
    render = render_lesion_html if labels.get("metric") == "isic2018_task1" else render_html
    return render(content, all_figures(content))


def _write(content: dict[str, Any], html_path: Path, json_path: Path | None) -> Path:
    page = render_page(content)  # everything computed before any file is touched
    if json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(content, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    with atomic_path(html_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    logger.info("wrote %s (%.1f MB)", html_path, html_path.stat().st_size / 1e6)
    return html_path


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    data: str | Path | None = None,
    device: str = "cpu",
    tta: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Evaluate a run's best checkpoint on its validation split and write its HTML report.

    Args:
        run_dir: a training run folder (config.yaml, split.json, metrics.jsonl,
            checkpoints/best.safetensors).
        out: the HTML file; default ``RUN_DIR/report.html``. ``report.json`` (the same name with
            ``.json``) is written beside it.
        data: dataset folder; default the run's ``data.root``.
        device: where the evaluation pass runs (``cpu``, ``cuda``).
        tta: flip TTA of the evaluation pass; ``None`` (default): as the checkpoint's thresholds
            were tuned. The report says which was used.
        progress: called with ``(images done, images in all)`` during the evaluation pass.

    Returns:
        The HTML file written.

    Raises:
        DermsegError: a missing or malformed run file, data folder, image or mask (named), or a
            bad ``out``; nothing is written then.
    """
    html_path, json_path = report_paths(run_dir, out)
    content = collect_report(run_dir, data=data, device=device, tta=tta, progress=progress)
    return _write(content, html_path, json_path)


def rebuild_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the HTML report again from the ``report.json`` beside ``out``, without the model.

    Raises:
        DataError: no ``report.json``, one of another format, or one older than the run's best
            checkpoint (the checkpoint changed: write the report again instead).
    """
    html_path, json_path = report_paths(run_dir, out)
    if not json_path.is_file():
        raise DataError("no report data to rebuild from; write the report without --rebuild first", json_path)
    try:
        content = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise DataError("not JSON", json_path) from None
    if not isinstance(content, dict) or content.get("format") != REPORT_FORMAT:
        raise DataError(f"not a dermseg report of format {REPORT_FORMAT}", json_path)
    checkpoint = RunFiles.of(run_dir).checkpoint
    if content["run"].get("checkpoint_fingerprint") != checkpoint_fingerprint(checkpoint):
        raise DataError(f"describes another version of {checkpoint}; write the report again", json_path)
    return _write(content, html_path, None)
