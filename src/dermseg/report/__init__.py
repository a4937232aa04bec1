"""HTML run reports: one self-contained page per training run.

``write_report(run_dir)`` evaluates the run's best checkpoint on its validation split and writes
``report.html`` (config and versions, training curves, the per-attribute table next to the 2018
leaderboard, ROC, precision-recall and threshold curves, a gallery of the best and worst
images) and ``report.json`` (the same numbers, to rebuild the page with ``rebuild_report``).

Modules: :mod:`~dermseg.report.collect` (run files, references, the report data),
:mod:`~dermseg.report.evaluation` (the evaluation pass), :mod:`~dermseg.report.gallery`
(thumbnails), :mod:`~dermseg.report.figures` (matplotlib), :mod:`~dermseg.report.html` (the
page), :mod:`~dermseg.report.build` (writing the files).
"""

from __future__ import annotations

from dermseg.report.build import rebuild_report, report_paths, write_report
from dermseg.report.collect import REFERENCES, collect_report

__all__ = ["REFERENCES", "collect_report", "rebuild_report", "report_paths", "write_report"]
