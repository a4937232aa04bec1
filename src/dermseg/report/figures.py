"""The report's plots, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Each function takes the plain data of ``report.json`` (never the model), so a report can be
redrawn from that file alone. Figures are built on their own :class:`~matplotlib.figure.Figure`
(no pyplot state, safe to call from any thread).
"""

from __future__ import annotations

import base64
import io
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dermseg.attributes import ATTRIBUTES, COLOURS, DISPLAY_NAMES

_DPI = 110


def data_uri(payload: bytes | str, mime: str) -> str:
    """A ``data:`` URI embedding ``payload`` (raw bytes, or text already in base64)."""
    text = payload if isinstance(payload, str) else base64.b64encode(payload).decode("ascii")
    return f"data:{mime};base64,{text}"


def _colour(name: str) -> tuple[float, float, float]:
    return tuple(c / 255 for c in COLOURS[name])


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, facecolor="white", bbox_inches="tight")
    return buffer.getvalue()


def training_figure(records: list[dict[str, Any]], references: dict[str, dict[str, Any]]) -> bytes:
    """Loss (train, validation) and official validation Jaccard per epoch, with the references.

    Args:
        records: the epoch records of ``metrics.jsonl``.
        references: :data:`~dermseg.report.collect.REFERENCES` (the leaderboard lines are drawn).
    """
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_j = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in records]
    ax_loss.plot(epochs, [r.get("train_loss") for r in records], "o-", ms=3, label="training")
    val = [(r["epoch"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    if val:
        ax_loss.plot([e for e, _ in val], [v for _, v in val], "s-", ms=3, label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    scored = [r for r in records if r.get("jaccard") is not None]
    x = [r["epoch"] for r in scored]
    for name in ATTRIBUTES:
        ys = [(r.get("jaccard_per_attribute") or {}).get(name) for r in scored]
        ax_j.plot(x, ys, "-", color=_colour(name), lw=1.2, label=DISPLAY_NAMES[name])
    ax_j.plot(x, [r["jaccard"] for r in scored], "ko-", ms=3, lw=2.2, label="overall (official)")
    for key, style in (("winner", "--"), ("single", ":")):
        ref = references[key]
        ax_j.axhline(ref["value"], color="0.35", ls=style, lw=1.2, label=f"{ref['label']} {ref['value']:.3f}")
    ax_j.set(xlabel="epoch", ylabel="Jaccard", title="Official Jaccard (validation)", ylim=(0, 1))
    ax_j.grid(alpha=0.3)
    ax_j.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: no curve hidden
    for ax in (ax_loss, ax_j):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:  # one point: keep the axis readable
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    return _png(fig)


def roc_figure(roc: dict[str, dict[str, Any] | None]) -> bytes:
    """Pixel-level ROC curves of the five attributes, with each one's operating point."""
    fig = Figure(figsize=(6.2, 5.4))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="chance")
    for name in ATTRIBUTES:
        curve = roc.get(name)
        if curve is None:
            continue
        colour = _colour(name)
        ax.plot(
            curve["fpr"],
            curve["tpr"],
            color=colour,
            lw=1.8,
            label=f"{DISPLAY_NAMES[name]} (AUC {curve['auc']:.3f})",
        )
        point = curve["operating_point"]
        ax.plot(point["fpr"], point["tpr"], "o", color=colour, mec="black", ms=7)
    ax.set(xlabel="false positive rate (1 - specificity)", ylabel="true positive rate (sensitivity)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title="ROC, pixels of the validation images")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _png(fig)


def pr_figure(pr: dict[str, dict[str, Any] | None]) -> bytes:
    """Pixel-level precision-recall curves, each attribute's prevalence (chance) dotted."""
    fig = Figure(figsize=(6.2, 5.4))
    ax = fig.subplots()
    for name in ATTRIBUTES:
        curve = pr.get(name)
        if curve is None:
            continue
        colour = _colour(name)
        ax.plot(
            curve["recall"],
            curve["precision"],
            color=colour,
            lw=1.8,
            label=f"{DISPLAY_NAMES[name]} (AP {curve['ap']:.3f})",
        )
        ax.axhline(curve["prevalence"], color=colour, ls=":", lw=1)
        point = curve["operating_point"]
        if point["precision"] is not None:
            ax.plot(point["recall"], point["precision"], "o", color=colour, mec="black", ms=7)
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (positive predictive value)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title="Precision-recall, pixels of the validation images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _png(fig)


def threshold_figure(thresholds: dict[str, Any]) -> bytes:
    """Official Jaccard against the probability threshold, per attribute and with one threshold for all."""
    fig = Figure(figsize=(7.6, 4.6))
    ax = fig.subplots()
    grid = thresholds["grid"]
    for k, name in enumerate(ATTRIBUTES):
        ys = thresholds["per_attribute"][name]
        colour = _colour(name)
        ax.plot(grid, ys, color=colour, lw=1.6, label=DISPLAY_NAMES[name])
        t = thresholds["checkpoint"][k]
        nearest = min(range(len(grid)), key=lambda i, t=t: abs(grid[i] - t))
        ax.plot(grid[nearest], ys[nearest], "o", color=colour, mec="black", ms=7)
    ax.plot(
        grid, thresholds["overall_common"], "k-", lw=2.4, label="overall (official), same threshold for all"
    )
    ax.set(xlabel="probability threshold", ylabel="official Jaccard", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("Official Jaccard vs threshold (validation; dots: the checkpoint's thresholds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _png(fig)


def lesion_training_figure(records: list[dict[str, Any]], colour: tuple[int, int, int]) -> bytes:
    """Loss (train, validation) and the validation score recorded per epoch, for a lesion run.

    Args:
        records: the epoch records of ``metrics.jsonl`` (``jaccard``: the run's validation score).
        colour: the lesion label's colour, 0-255.
    """
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_j = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in records]
    ax_loss.plot(epochs, [r.get("train_loss") for r in records], "o-", ms=3, label="training")
    val = [(r["epoch"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    if val:
        ax_loss.plot([e for e, _ in val], [v for _, v in val], "s-", ms=3, label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    scored = [r for r in records if r.get("jaccard") is not None]
    ax_j.plot(
        [r["epoch"] for r in scored],
        [r["jaccard"] for r in scored],
        "o-",
        color=tuple(c / 255 for c in colour),
        ms=3,
        lw=2.2,
        label="validation score",
    )
    ax_j.set(xlabel="epoch", ylabel="Jaccard", title="Validation score per epoch", ylim=(0, 1))
    ax_j.grid(alpha=0.3)
    ax_j.legend(fontsize=8)
    for ax in (ax_loss, ax_j):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    return _png(fig)


def lesion_threshold_figure(thresholds: dict[str, Any], colour: tuple[int, int, int]) -> bytes:
    """Mean Jaccard and the official thresholded Jaccard (ISIC 2018 Task 1) against the threshold."""
    fig = Figure(figsize=(7.6, 4.6))
    ax = fig.subplots()
    grid = thresholds["grid"]
    rgb = tuple(c / 255 for c in colour)
    ax.plot(grid, thresholds["jaccard"], color=rgb, lw=1.6, ls="--", label="mean Jaccard")
    ax.plot(
        grid, thresholds["threshold_jaccard"], color="black", lw=2.4, label="thresholded Jaccard (official)"
    )
    t = thresholds["checkpoint"][0]
    nearest = min(range(len(grid)), key=lambda i: abs(grid[i] - t))
    ax.plot(grid[nearest], thresholds["threshold_jaccard"][nearest], "o", color=rgb, mec="black", ms=7)
    ax.set(xlabel="probability threshold", ylabel="score (mean over images)", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("ISIC 2018 Task 1 scores vs threshold (validation; dot: the checkpoint's threshold)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower center")
    return _png(fig)


def all_figures(content: dict[str, Any]) -> dict[str, str]:
    """Every plot of a report as a ``data:image/png`` URI: ``training``, ``roc``, ``pr``, ``thresholds``
    (a lesion report: ``training`` and ``thresholds``)."""
    evaluation = content["evaluation"]
    labels = content.get("labels")
    if labels is not None and labels.get("metric") == "isic2018_task1":
        colour = tuple(labels["labels"][0]["colour"])
        return {
            "training": data_uri(lesion_training_figure(content["records"], colour), "image/png"),
            "thresholds": data_uri(lesion_threshold_figure(evaluation["thresholds"], colour), "image/png"),
        }
    return {
        "training": data_uri(training_figure(content["records"], content["references"]), "image/png"),
        "roc": data_uri(roc_figure(evaluation["roc"]), "image/png"),
        "pr": data_uri(pr_figure(evaluation["pr"]), "image/png"),
        "thresholds": data_uri(threshold_figure(evaluation["thresholds"]), "image/png"),
    }
