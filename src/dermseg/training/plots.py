"""Plots written by training (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dermseg.attributes import ATTRIBUTES, COLOURS, DISPLAY_NAMES  # noqa: E402
from dermseg.data.imageio import atomic_path  # noqa: E402


def training_curves(records: list[dict[str, Any]], out: str | Path) -> None:
    """Loss and official Jaccard per epoch, side by side, as a PNG.

    Args:
        records: the epoch records of ``metrics.jsonl``.
        out: PNG path (written atomically).
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
    if scored:
        ax_j.plot([r["epoch"] for r in scored], [r["jaccard"] for r in scored], "ko-", lw=2, label="overall")
        for name in ATTRIBUTES:
            colour = tuple(c / 255 for c in COLOURS[name])
            ax_j.plot(
                [r["epoch"] for r in scored],
                [r["jaccard_per_attribute"][name] for r in scored],
                "-",
                color=colour,
                label=DISPLAY_NAMES[name],
            )
    ax_j.set(
        xlabel="epoch", ylabel="Jaccard", title="Official ISIC 2018 Task 2 Jaccard (validation)", ylim=(0, 1)
    )
    ax_j.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
