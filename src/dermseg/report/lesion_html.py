"""The report page of a lesion run (a label set scored with the ISIC 2018 Task 1 metric).

The same self-contained page as :mod:`dermseg.report.html` (its style and helpers), with the
Task 1 score table in place of the Task 2 per-attribute table and leaderboard comparison:
sections ``summary``, ``scores``, ``curves``, ``thresholds``, ``gallery`` and ``config``.
Table cells holding a score carry the full-precision value in ``data-value``.
"""

from __future__ import annotations

from typing import Any

from dermseg.report.figures import data_uri
from dermseg.report.html import _big, _config, _figure, _num, _when, esc, fmt, page

#: Section ids and titles, in page order.
LESION_SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Summary"),
    ("scores", "ISIC 2018 Task 1 scores"),
    ("curves", "Training"),
    ("thresholds", "Threshold"),
    ("gallery", "Gallery"),
    ("config", "Configuration"),
)

#: The six official scores, in the table's order, with their definitions.
SCORE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("threshold_jaccard", "Thresholded Jaccard (official)", "each image's Jaccard, 0 below 0.65"),
    ("jaccard", "Jaccard", "TP / (TP + FP + FN)"),
    ("dice", "Dice", "2 TP / (2 TP + FP + FN)"),
    ("accuracy", "Accuracy", "(TP + TN) / all pixels"),
    ("sensitivity", "Sensitivity", "TP / (TP + FN)"),
    ("specificity", "Specificity", "TN / (TN + FP)"),
)


def _chip(colour: list[int]) -> str:
    r, g, b = colour
    return f'<span class="chip" style="background:rgb({r},{g},{b})"></span>'


def _header(c: dict[str, Any]) -> str:
    run, model, data, labels = c["run"], c["run"]["model"], c["run"]["data"], c["labels"]
    weights = model.get("encoder_weights") or "none"
    init = "no pretrained weights" if weights == "none" else f"{weights} weights"
    model_text = (
        f"{model['arch']} \u00b7 {model['encoder']} encoder ({init}) \u00b7 label set {labels['name']} "
        f"\u00b7 input {model['input_size']} px \u00b7 {model['parameters'] / 1e6:.1f} M parameters"
    )
    selection = f" ({data['selection']})" if data.get("selection") else ""
    data_text = f"{data['folder']} \u00b7 {data['images']} validation images{selection}"
    ckpt = c["checkpoint"]
    best = (
        f" \u00b7 best epoch {ckpt['epoch']} of {len(c['records'])}" if ckpt.get("epoch") is not None else ""
    )
    facts = [
        ("Model", model_text),
        ("Data", data_text),
        ("Trained", f"{_when(run['trained'])}{best}"),
        (
            "Report",
            f"{_when(run['generated'])} \u00b7 dermseg {c['versions']['dermseg']} "
            f"\u00b7 evaluated on {run['device']}"
            + (f" \u00b7 {run['tta']['description']}" if run.get("tta") else ""),
        ),
    ]
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    return (
        '<header class="top"><div class="brand">dermseg \u00b7 lesion segmentation run report '
        "(ISIC 2018 Task 1 metric)</div>"
        f'<h1>{esc(run["name"])}</h1><dl class="facts">{rows}</dl></header>'
    )


def _nav() -> str:
    links = "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title in LESION_SECTIONS)
    return f'<nav aria-label="sections">{links}</nav>'


def _summary(c: dict[str, Any]) -> str:
    scores, data = c["evaluation"]["scores"], c["run"]["data"]
    macro = scores["macro_average"]
    tuning = c["checkpoint"].get("tuning") or {}
    tuned_here = tuning.get("subset") == "val"
    parts = [
        '<div class="cards">'
        '<div class="card"><div class="label">Thresholded Jaccard (official ISIC 2018 Task 1 score: '
        "each image's Jaccard, 0 below 0.65, averaged over images)</div>"
        f"{_big(scores['overall'])}"
        f'<div class="note">on {esc(scores["images"])} validation images of this run'
        f"{esc(' (' + data['selection'] + ')' if data.get('selection') else '')}</div></div>"
        '<div class="card"><div class="label">Mean Jaccard (over images)</div>'
        f"{_big(macro['jaccard'])}"
        f'<div class="note">Dice {esc(fmt(macro["dice"]))}, sensitivity {esc(fmt(macro["sensitivity"]))}, '
        f"specificity {esc(fmt(macro['specificity']))}</div></div></div>"
    ]
    if tuned_here:
        parts.append(
            '<p class="banner">The threshold was tuned on these same validation images, so these scores are '
            "optimistic; a held-out test set gives the unbiased number.</p>"
        )
    return "".join(parts)


def _scores(c: dict[str, Any]) -> str:
    scores = c["evaluation"]["scores"]
    macro = scores["macro_average"]
    rows = []
    for key, label, how in SCORE_ROWS:
        total = ' class="total"' if key == "threshold_jaccard" else ""
        cells = f"<td>{esc(label)}</td>{_num(macro[key])}<td>{esc(how)}</td>"
        rows.append(f'<tr data-score="{esc(key)}"{total}>{cells}</tr>')
    return (
        '<div class="scroll"><table><thead><tr><th>Score</th><th>Mean over images</th><th>Per image</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f'<p class="note">The official ISIC 2018 Task 1 metric on {esc(scores["images"])} images '
        f"({esc(scores['images_with_lesion'])} with a lesion in their ground truth), at each image's "
        "original size: every image's scores from its own pixel counts, then the plain mean over images "
        "(an empty truth and an empty prediction score 1). Masks are the checkpoint's: probabilities above "
        "its threshold, then its post-processing.</p>"
    )


def _curves(c: dict[str, Any], figures: dict[str, str]) -> str:
    epoch = esc(c["checkpoint"].get("epoch"))
    caption = (
        f"Training and validation loss, and the validation score recorded after each evaluated epoch "
        f"({len(c['records'])} epochs; the checkpoint is the one of epoch {epoch})."
    )
    return _figure(figures["training"], "training curves", caption)


def _thresholds(c: dict[str, Any], figures: dict[str, str]) -> str:
    t = c["evaluation"]["thresholds"]
    post = (
        " The checkpoint also post-processes its masks, which these curves leave out."
        if t["postprocessed"]
        else ""
    )
    caption = (
        "Mean Jaccard (dashed) and the official thresholded Jaccard (black) when the masks are the "
        "probabilities above a threshold. Dot: the checkpoint's threshold "
        f"({esc(fmt(t['checkpoint'][0], 2))}). "
        f"A threshold chosen on these images flatters them.{post}"
    )
    return _figure(figures["thresholds"], "Task 1 scores against threshold", caption)


def _gallery_item(e: dict[str, Any], total: int) -> str:
    uri = {k: data_uri(e[k], "image/jpeg") for k in ("image", "truth", "prediction")}
    panels = "".join(
        f'<figure><img src="{esc(uri[k])}" width="{esc(e["width"])}" height="{esc(e["height"])}" '
        f'alt="{esc(e["id"])} {esc(label)}"><figcaption>{esc(label)}</figcaption></figure>'
        for k, label in (("image", "image"), ("truth", "ground truth"), ("prediction", "prediction"))
    )
    notes = "".join(
        f"<li>{esc(label)} {esc(fmt(e[key], 3))}</li>"
        for key, label in (("dice", "Dice"), ("sensitivity", "sensitivity"), ("specificity", "specificity"))
    )
    return (
        f'<div class="item" data-id="{esc(e["id"])}" data-jaccard="{esc(repr(e["jaccard"]))}">'
        f"<h4>{esc(e['id'])} \u00b7 Jaccard {esc(fmt(e['jaccard'], 3))} \u00b7 "
        f"rank {esc(e['rank'])} of {esc(total)}</h4>"
        f'<div class="panels">{panels}</div><ul>{notes}</ul></div>'
    )


def _gallery(c: dict[str, Any]) -> str:
    ev, label = c["evaluation"], c["labels"]["labels"][0]
    per_image = ev["per_image"]
    parts = [
        f'<p class="legend"><span>{_chip(label["colour"])}{esc(label["display_name"])}</span></p>'
        f'<p class="note">Each image\'s own Jaccard; the {esc(len(per_image))} validation images ranked.</p>'
    ]
    for key, title in (("best", "Best"), ("worst", "Worst")):
        items = ev["gallery"][key]
        if items:
            parts.append(f'<h3>{esc(title)} {len(items)}</h3><div class="gallery" id="gallery-{key}">')
            parts.extend(_gallery_item(e, len(per_image)) for e in items)
            parts.append("</div>")
    rows = "".join(
        f'<tr data-id="{esc(e["id"])}"><td>{esc(e["rank"])}</td><td>{esc(e["id"])}</td>'
        + "".join(_num(e[key], 3) for key, _, _ in SCORE_ROWS)
        + "</tr>"
        for e in per_image
    )
    head = "".join(f"<th>{esc(label)}</th>" for _, label, _ in SCORE_ROWS)
    parts.append(
        f"<details><summary>All {len(per_image)} validation images by Jaccard</summary>"
        f'<div class="scroll"><table><thead><tr><th>Rank</th><th>Image</th>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div></details>"
    )
    return "".join(parts)


def render_lesion_html(content: dict[str, Any], figures: dict[str, str]) -> str:
    """The report page of a lesion run.

    Args:
        content: the report data (:func:`~dermseg.report.collect.collect_report` of a lesion run:
            with ``labels`` and a :func:`~dermseg.report.lesion.evaluate_lesion_for_report` evaluation).
        figures: ``data:`` URIs of ``training`` and ``thresholds``
            (:func:`~dermseg.report.figures.all_figures`).

    Returns:
        The HTML document, self-contained (no external resource).
    """
    bodies = {
        "summary": _summary(content),
        "scores": _scores(content),
        "curves": _curves(content, figures),
        "thresholds": _thresholds(content, figures),
        "gallery": _gallery(content),
        "config": _config(content),
    }
    return page(content, LESION_SECTIONS, bodies, _header(content), _nav())
