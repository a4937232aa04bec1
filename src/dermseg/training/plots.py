"""Plots written by training (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dermseg.data.imageio import atomic_path  # noqa: E402
from dermseg.labels import DEFAULT, LabelSet  # noqa: E402

#: The title of the Jaccard panel, per metric of a label set.
_TITLES = {
    "isic2018_task2": "Official ISIC 2018 Task 2 Jaccard (validation)",
    "isic2018_task1": "ISIC 2018 Task 1 (validation, mean over images)",
}


def training_curves(records: list[dict[str, Any]], out: str | Path, labels: LabelSet = DEFAULT) -> None:
    """Loss and validation Jaccard per epoch, side by side, as a PNG.

    The Jaccard panel draws each record's ``jaccard`` (what selects the checkpoint), one line per
    label of ``labels`` when it has several (in the label's colour), and for the Task 1 metric
    the official thresholded Jaccard and the Dice.

    Args:
        records: the epoch records of ``metrics.jsonl``.
        out: PNG path (written atomically).
        labels: the run's label set.
    """
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_j) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    ax_loss.plot(epochs, [r["train_loss"] for r in records], "o-", label="train")
    val = [(r["epoch"], r["val_loss"]) for r in records if "val_loss" in r]
    if val:
        ax_loss.plot(*zip(*val, strict=True), "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.legend()
    scored = [r for r in records if "jaccard" in r]
    task1 = labels.metric == "isic2018_task1"
    if scored:
        x = [r["epoch"] for r in scored]
        main = "mean Jaccard" if task1 else "overall"
        ax_j.plot(x, [r["jaccard"] for r in scored], "ko-", lw=2, label=main)
        if labels.num_labels > 1:
            for lab in labels.labels:
                ax_j.plot(
                    x,
                    [(r.get("jaccard_per_attribute") or {}).get(lab.name) for r in scored],
                    "-",
                    color=tuple(c / 255 for c in lab.colour),
                    label=lab.display_name,
                )
        for key, style, name in (("threshold_jaccard", "s--", "thresholded Jaccard"), ("dice", "^:", "Dice")):
            if task1 and all(key in r for r in scored):
                ax_j.plot(x, [r[key] for r in scored], style, label=name)
    ax_j.set(xlabel="epoch", ylabel="Jaccard", title=_TITLES.get(labels.metric, "Jaccard"), ylim=(0, 1))
    ax_j.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
