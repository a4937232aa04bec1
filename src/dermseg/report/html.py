"""The report page: one self-contained HTML file (CSS inline, images as ``data:`` URIs).

:func:`render_html` turns the report data (``report.json``) and its figures into text; every
piece of text from the run (names, paths, config) goes through :func:`html.escape`. Each section
has a stable id (``summary``, ``attributes``, ``curves``, ``roc``, ``pr``, ``thresholds``,
``gallery``, ``config``) for links and tests; table cells holding a score carry the full-precision
value in ``data-value``.
"""

from __future__ import annotations

import html
from typing import Any

from dermseg.attributes import ATTRIBUTE_INFO, ATTRIBUTES, COLOURS, DISPLAY_NAMES
from dermseg.report.figures import data_uri

#: Section ids and titles, in page order.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Summary"),
    ("attributes", "Per attribute"),
    ("curves", "Training"),
    ("roc", "ROC"),
    ("pr", "Precision-recall"),
    ("thresholds", "Thresholds"),
    ("gallery", "Gallery"),
    ("config", "Configuration"),
)

_CSS = """
:root {
  --ink:#1d2330;
  --muted:#5b6474;
  --line:#dde1e8;
  --panel:#f6f7f9;
  --accent:#1f5fa8;
  --warn:#8a4b00;
}
* { box-sizing: border-box; }
body {
  margin:0;
  font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:var(--ink);
  background:#fff;
}
header.top { background:#14233a; color:#fff; padding:20px 32px 16px; }
header.top .brand { font-size:12px; letter-spacing:.08em; text-transform:uppercase; opacity:.75; }
header.top h1 { margin:4px 0 10px; font-size:26px; font-weight:600; word-break:break-all; }
dl.facts {
  display:grid;
  grid-template-columns:max-content 1fr;
  gap:2px 14px;
  margin:0;
  font-size:14px;
}
dl.facts dt { opacity:.7; } dl.facts dd { margin:0; word-break:break-all; }
nav {
  position:sticky;
  top:0;
  z-index:2;
  background:#fff;
  border-bottom:1px solid var(--line);
  padding:8px 32px;
  display:flex;
  flex-wrap:wrap;
  row-gap:4px;
}
nav a {
  margin-right:16px;
  color:var(--accent);
  text-decoration:none;
  font-size:14px;
  white-space:nowrap;
}
nav a:hover { text-decoration:underline; }
main { max-width:1120px; margin:0 auto; padding:8px 32px 40px; }
section {
  padding-top:12px; border-bottom:1px solid var(--line); padding-bottom:18px; scroll-margin-top:48px;
}
.scroll { overflow-x:auto; }
h2 { font-size:20px; margin:18px 0 10px; }
h3 { font-size:16px; margin:16px 0 8px; }
.banner {
  margin:16px 0 0;
  padding:10px 14px;
  border-left:4px solid var(--warn);
  background:#fff4e5;
  color:var(--warn);
}
.note { color:var(--muted); font-size:13.5px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(300px,1fr)); gap:14px; }
.card {
  background:var(--panel);
  border:1px solid var(--line);
  border-radius:8px;
  padding:14px 16px;
}
.card .label { color:var(--muted); font-size:13px; }
.card .big { font-size:34px; font-weight:650; line-height:1.2; }
.bars { margin-top:8px; }
.bar {
  display:grid;
  grid-template-columns:190px 1fr 56px;
  align-items:center;
  gap:8px;
  font-size:13px;
  margin:3px 0;
}
.bar .track { background:#e4e7ec; border-radius:3px; height:12px; }
.bar .fill { background:#7b8798; height:12px; border-radius:3px; }
.bar.this .fill { background:var(--accent); }
.bar .val { text-align:right; font-variant-numeric:tabular-nums; }
table { border-collapse:collapse; width:100%; font-size:14px; }
th, td {
  padding:6px 8px;
  border-bottom:1px solid var(--line);
  text-align:right;
  font-variant-numeric:tabular-nums;
}
th:first-child, td:first-child { text-align:left; }
thead th { background:var(--panel); font-weight:600; }
tr.total td { font-weight:650; border-top:2px solid var(--ink); }
tr.reference td { color:var(--muted); }
.chip {
  display:inline-block;
  width:11px;
  height:11px;
  border-radius:2px;
  margin-right:6px;
  vertical-align:-1px;
  border:1px solid rgba(0,0,0,.25);
}
figure { margin:10px 0; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; }
figcaption { color:var(--muted); font-size:13.5px; margin-top:4px; }
.legend span { margin-right:14px; font-size:13px; white-space:nowrap; }
.gallery { display:grid; grid-template-columns:1fr; gap:14px; }
.item {
  border:1px solid var(--line);
  border-radius:8px;
  padding:10px 12px;
  background:var(--panel);
}
.item h4 { margin:0 0 6px; font-size:14px; font-weight:600; }
.item .panels { display:flex; gap:8px; flex-wrap:wrap; }
.item figure { margin:0; } .item figure img { width:256px; max-width:100%; }
.item figcaption { text-align:center; }
.item ul { margin:6px 0 0; padding-left:0; list-style:none; font-size:13px; }
.item li { display:inline-block; margin-right:14px; }
pre {
  background:var(--panel);
  border:1px solid var(--line);
  border-radius:6px;
  padding:10px 12px;
  overflow:auto;
  font-size:12.5px;
}
details summary { cursor:pointer; color:var(--accent); margin:8px 0; }
footer {
  max-width:1120px;
  margin:0 auto;
  padding:16px 32px 32px;
  color:var(--muted);
  font-size:13px;
}
@media print {
  nav { display:none; }
  section { break-inside:avoid-page; }
  header.top { background:none; color:#000; }
}
"""


def esc(value: Any) -> str:
    """Any value as escaped HTML text."""
    return html.escape(str(value), quote=True)


def fmt(value: float | None, digits: int = 4) -> str:
    """A score with ``digits`` decimals, or an en dash when undefined."""
    return "\u2013" if value is None else f"{value:.{digits}f}"


def _num(value: float | None, digits: int = 4) -> str:
    """A table cell with the rounded value shown and the full value in ``data-value``."""
    full = "" if value is None else repr(float(value))
    return f'<td data-value="{esc(full)}">{esc(fmt(value, digits))}</td>'


def _sentence(text: str) -> str:
    """``text`` with its first letter in upper case (the rest as it is)."""
    return text[:1].upper() + text[1:]


def _when(iso: str) -> str:
    """An ISO time as ``2026-11-26 19:39 +00:00``."""
    return iso.replace("T", " ", 1).replace("+", " +", 1) if "T" in iso else iso


def _big(value: float | None) -> str:
    """A headline number, with its full value in ``data-value``."""
    full = "" if value is None else repr(float(value))
    return f'<div class="big" data-value="{esc(full)}">{esc(fmt(value))}</div>'


def _present(entry: dict[str, Any]) -> str:
    """The attributes in an image's ground truth, by display name."""
    names = [DISPLAY_NAMES[a] for a in ATTRIBUTES if entry["attributes"][a]["truth"]]
    return ", ".join(names) or "none"


def _chip(name: str) -> str:
    r, g, b = COLOURS[name]
    return f'<span class="chip" style="background:rgb({r},{g},{b})"></span>'


def _figure(uri: str, alt: str, caption: str) -> str:
    return f'<figure><img src="{esc(uri)}" alt="{esc(alt)}"><figcaption>{caption}</figcaption></figure>'


def _header(c: dict[str, Any]) -> str:
    run, model, data = c["run"], c["run"]["model"], c["run"]["data"]
    weights = model.get("encoder_weights") or "none"
    init = "no pretrained weights" if weights == "none" else f"{weights} weights"
    model_text = (
        f"{model['arch']} \u00b7 {model['encoder']} encoder ({init}) \u00b7 {model['encoding']} \u00b7 "
        f"input {model['input_size']} px \u00b7 {model['parameters'] / 1e6:.1f} M parameters"
    )
    kind = "synthetic images \u00b7 " if data["synthetic"] else ""
    selection = f" ({data['selection']})" if data.get("selection") else ""
    data_text = f"{kind}{data['folder']} \u00b7 {data['images']} validation images{selection}"
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
        '<header class="top"><div class="brand">dermseg \u00b7 ISIC 2018 Task 2 run report</div>'
        f'<h1>{esc(run["name"])}</h1><dl class="facts">{rows}</dl></header>'
    )


def _nav() -> str:
    links = "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title in SECTIONS)
    return f'<nav aria-label="sections">{links}</nav>'


def _bar(label: str, value: float, scale: float, this: bool = False, digits: int = 3) -> str:
    """One labelled horizontal bar; ``scale`` is the value of a full bar."""
    width = max(0.0, min(1.0, value / scale)) * 100
    return (
        f'<div class="bar{" this" if this else ""}"><span>{esc(label)}</span>'
        f'<span class="track"><span class="fill" style="display:block;width:{width:.1f}%"></span></span>'
        f'<span class="val">{esc(fmt(value, digits))}</span></div>'
    )


def _summary(c: dict[str, Any]) -> str:
    scores, refs, data = c["evaluation"]["scores"], c["references"], c["run"]["data"]
    overall = scores["overall"]
    per_image = (scores.get("per_image_mean_jaccard") or {}).get("mean")
    per_image_skip = (scores.get("per_image_mean_jaccard_skip_empty") or {}).get("mean")
    tuning = c["checkpoint"].get("tuning") or {}
    tuned_here = tuning.get("subset") == "val"
    chose = (
        f" ({data['selection']}), which selected the best epoch"
        + (" and tuned the thresholds" if tuned_here else "")
        if data.get("selection")
        else ""
    )
    parts = []
    if data["synthetic"]:
        parts.append(
            '<p class="banner"><strong>Synthetic data.</strong> These numbers were measured on synthetic '
            "images: they show that the pipeline learns, not how well it segments real lesions.</p>"
        )
    scale = max(0.6, overall)  # the bars of a card share a scale
    bars = (
        _bar("this run (validation)", overall, scale, this=True)
        + _bar(refs["winner"]["label"], refs["winner"]["value"], scale)
        + _bar(refs["single"]["label"], refs["single"]["value"], scale)
    )
    scale_per_image = max(0.6, per_image or 0.0)
    parts.append(
        '<div class="cards">'
        '<div class="card"><div class="label">Official Jaccard (ISIC 2018 Task 2, micro-averaged over the '
        "five attributes)</div>"
        f"{_big(overall)}"
        f'<div class="note">on {esc(data["images"])} validation images of this run{esc(chose)}</div>'
        f'<div class="bars">{bars}</div>'
        '<p class="note">The leaderboard numbers are on the 2018 test set (1,000 images); this run\'s is on '
        "its validation split: the same metric, not the same images.</p></div>"
        '<div class="card"><div class="label">Per-image mean Jaccard (the thesis\'s number; '
        "<strong>not</strong> the official metric)</div>"
        f"{_big(per_image)}"
        f'<div class="note">mean over images and attributes of each image\'s Jaccard, an attribute neither '
        f"present nor predicted counting 1; {esc(fmt(per_image_skip))} when such pairs are skipped.</div>"
        f'<div class="bars">{_bar("this run, per-image mean", per_image or 0.0, scale_per_image, True, 4)}'
        f"{_bar(refs['thesis']['label'], refs['thesis']['value'], scale_per_image, digits=4)}</div>"
        f'<p class="note">{esc(_sentence(refs["thesis"]["note"]))}: compare it with neither the official '
        "Jaccard nor the leaderboard.</p></div>"
        '<div class="card"><div class="label">Also</div><ul class="note">'
        f"<li>mean of the five attributes' Jaccard: {esc(fmt(scores['mean_attribute_jaccard']))}</li>"
        f"<li>official Dice (micro-averaged): {esc(fmt(scores['micro_average']['dice']))}</li>"
        f"<li>best epoch by validation Jaccard: {esc(c['checkpoint'].get('epoch'))}</li>"
        "</ul></div></div>"
    )
    if data.get("selection") == "the official validation set":
        parts.append(
            '<p class="banner">The best epoch was selected'
            + (" and the thresholds tuned" if tuned_here else "")
            + " on the official validation set: no score on it is unbiased, here or elsewhere. "
            "Train with data.validation: holdout to keep it unseen.</p>"
        )
    if tuned_here:
        parts.append(
            '<p class="banner">The thresholds were tuned on these same validation images '
            f"({esc(fmt(tuning.get('overall_at_default')))} at 0.5 \u2192 "
            f"{esc(fmt(tuning.get('overall_tuned')))}), "
            "so these scores are optimistic; the held-out test set gives the unbiased number.</p>"
        )
    return "".join(parts)


def _attributes(c: dict[str, Any]) -> str:
    scores, refs = c["evaluation"]["scores"], c["references"]
    n = scores["images"]
    thresholds = c["evaluation"]["thresholds"]["checkpoint"]
    head = (
        "<thead><tr><th>Attribute</th><th>Images with it</th><th>Jaccard</th><th>Dice</th>"
        "<th>Pixel AUC</th><th>Pixel AP</th><th>Presence AUC</th><th>Threshold</th></tr></thead>"
    )
    rows = []
    for k, name in enumerate(ATTRIBUTES):
        with_it = scores["images_with_attribute"][name]
        rows.append(
            f'<tr data-attribute="{esc(name)}"><td>{_chip(name)}{esc(DISPLAY_NAMES[name])}</td>'
            f"<td>{esc(with_it)} / {esc(n)}</td>"
            + _num(scores[name]["jaccard"])
            + _num(scores[name]["dice"])
            + _num(scores["pixel"][name]["auc"])
            + _num(scores["pixel"][name]["ap"])
            + _num(scores["presence"][name]["auc"])
            + _num(thresholds[k], 2)
            + "</tr>"
        )
    empty = "<td></td>"
    rows.append(
        '<tr class="total" data-attribute="overall"><td>Overall (official, micro-averaged)</td>'
        f"<td>{esc(n)} images</td>"
        + _num(scores["overall"])
        + _num(scores["micro_average"]["dice"])
        + empty * 4
        + "</tr>"
    )
    for key in ("winner", "single"):
        ref = refs[key]
        rows.append(
            f'<tr class="reference" data-reference="{esc(key)}"><td>{esc(ref["label"])}</td>'
            "<td>2018 test set</td>" + _num(ref["value"], 3) + empty * 5 + "</tr>"
        )
    return (
        f'<div class="scroll"><table>{head}<tbody>{"".join(rows)}</tbody></table></div>'
        '<p class="note">Jaccard and Dice: the official ISIC 2018 Task 2 metric at each image\'s '
        "original size (confusion counts normalised by the image's pixel count, summed over images, "
        "then the ratio); "
        "an attribute neither present nor predicted anywhere scores 1 by the official convention. Masks are "
        "the checkpoint's: probabilities above its thresholds, then its post-processing. Pixel AUC and AP "
        "rank every pixel's probability (threshold-free; probabilities binned to 1/4096). Presence AUC ranks "
        "images by their highest probability against whether the attribute is in their ground truth. "
        "\u2013: undefined (no positive, or no negative).</p>"
    )


def _curves(c: dict[str, Any], figures: dict[str, str]) -> str:
    ckpt = c["checkpoint"]
    caption = (
        f"Training and validation loss, and the official Jaccard on the validation images after each "
        f"evaluated epoch ({len(c['records'])} epochs; the checkpoint is the one of epoch "
        f"{esc(ckpt.get('epoch'))}). Validation during training scores at the working resolution with the "
        "configured thresholds, so the last point can differ slightly from the table, which is at the "
        "original size with the checkpoint's final thresholds. Grey lines: the 2018 leaderboard (test set)."
    )
    return _figure(figures["training"], "training curves", caption)


def _missing_curves(curves: dict[str, Any], why: str) -> str:
    absent = [DISPLAY_NAMES[a] for a in ATTRIBUTES if curves.get(a) is None]
    return f" No curve for {esc(', '.join(absent))}: {esc(why)}." if absent else ""


def _roc(c: dict[str, Any], figures: dict[str, str]) -> str:
    roc = c["evaluation"]["roc"]
    caption = (
        "Pixel-level ROC curve of each attribute over the validation images; dots: the checkpoint's "
        "thresholds before post-processing (sensitivity and 1 \u2212 specificity of its masks)."
        + _missing_curves(roc, "no positive or no negative pixel")
    )
    return _figure(figures["roc"], "ROC curves per attribute", caption)


def _pr(c: dict[str, Any], figures: dict[str, str]) -> str:
    pr = c["evaluation"]["pr"]
    caption = (
        "Pixel-level precision-recall curve of each attribute; dotted: the attribute's share of pixels "
        "(a random ranking's precision); dots: the checkpoint's thresholds before post-processing. With "
        "rare structures this view is more telling than the ROC." + _missing_curves(pr, "no positive pixel")
    )
    return _figure(figures["pr"], "precision-recall curves per attribute", caption)


def _thresholds(c: dict[str, Any], figures: dict[str, str]) -> str:
    t = c["evaluation"]["thresholds"]
    post = (
        " The checkpoint also post-processes its masks (opening, small-component removal or presence gate), "
        "which these curves leave out, so its dots can differ from the table."
        if t["postprocessed"]
        else ""
    )
    caption = (
        "Official Jaccard of each attribute when its masks are the probabilities above a threshold, and "
        "the overall official Jaccard with one threshold for all five (black). Dots: the checkpoint's "
        f"thresholds ({esc(', '.join(fmt(v, 2) for v in t['checkpoint']))}). Thresholds chosen on "
        f"these images flatter them.{post}"
    )
    return _figure(figures["thresholds"], "Jaccard against threshold", caption)


def _gallery_item(e: dict[str, Any], total: int) -> str:
    uri = {k: data_uri(e[k], "image/jpeg") for k in ("image", "truth", "prediction")}
    panels = "".join(
        f'<figure><img src="{esc(uri[k])}" width="{esc(e["width"])}" height="{esc(e["height"])}" '
        f'alt="{esc(e["id"])} {esc(label)}"><figcaption>{esc(label)}</figcaption></figure>'
        for k, label in (("image", "image"), ("truth", "ground truth"), ("prediction", "prediction"))
    )
    notes = []
    for name in ATTRIBUTES:
        a = e["attributes"][name]
        if not (a["truth"] or a["predicted"]):
            continue
        seen = "in truth" if a["truth"] else "not in truth"
        said = "predicted" if a["predicted"] else "missed"
        if not a["truth"]:
            said = "predicted (false positive)"
        notes.append(
            f"<li>{_chip(name)}{esc(DISPLAY_NAMES[name])}: {esc(seen)}, {esc(said)}, "
            f"Jaccard {esc(fmt(a['jaccard'], 3))}</li>"
        )
    return (
        f'<div class="item" data-id="{esc(e["id"])}" data-jaccard="{esc(repr(e["jaccard"]))}">'
        f"<h4>{esc(e['id'])} \u00b7 Jaccard {esc(fmt(e['jaccard'], 3))} \u00b7 "
        f"rank {esc(e['rank'])} of {esc(total)}</h4>"
        f'<div class="panels">{panels}</div><ul>{"".join(notes)}</ul></div>'
    )


def _gallery(c: dict[str, Any]) -> str:
    ev = c["evaluation"]
    per_image = ev["per_image"]
    with_truth = sum(e["has_truth"] for e in per_image)
    legend = "".join(f"<span>{_chip(a.name)}{esc(a.display_name)}</span>" for a in ATTRIBUTE_INFO)
    parts = [
        f'<p class="legend">{legend}</p>'
        "<p class=\"note\">Each image's own official Jaccard: its five attributes' confusion counts pooled, "
        f"as the overall score pools the images. Ranked among the {esc(with_truth)} validation images "
        "with at least one structure in their ground truth (the others have nothing to show).</p>"
    ]
    if not with_truth:
        parts.append('<p class="note">No validation image has a structure in its ground truth.</p>')
    for key, title in (("best", "Best"), ("worst", "Worst")):
        items = ev["gallery"][key]
        if items:
            parts.append(f'<h3>{esc(title)} {len(items)}</h3><div class="gallery" id="gallery-{key}">')
            parts.extend(_gallery_item(e, with_truth) for e in items)
            parts.append("</div>")
    rows = "".join(
        f"<tr><td>{esc(e['rank'])}</td><td>{esc(e['id'])}</td>"
        + _num(e["jaccard"] if e["has_truth"] else None, 3)
        + f"<td>{esc(_present(e))}</td></tr>"
        for e in per_image
    )
    parts.append(
        f"<details><summary>All {len(per_image)} validation images by Jaccard</summary><table>"
        "<thead><tr><th>Rank</th><th>Image</th><th>Jaccard</th><th>In the ground truth</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></details>"
    )
    return "".join(parts)


def _config(c: dict[str, Any]) -> str:
    versions = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in c["versions"].items())
    ckpt = c["checkpoint"]
    post = ckpt.get("postprocess") or {}
    ckpt_rows = [
        ("file", c["run"]["checkpoint"]),
        ("written by dermseg", ckpt.get("dermseg_version")),
        ("epoch", ckpt.get("epoch")),
        ("validation Jaccard when saved", fmt(ckpt.get("jaccard"))),
        ("thresholds", ", ".join(fmt(t, 2) for t in (ckpt.get("thresholds") or []))),
        ("post-processing", ", ".join(f"{k} {v}" for k, v in post.items() if k != "thresholds") or "none"),
        ("encoder initialisation", ckpt.get("encoder_init") or "\u2013"),
    ]
    ckpt_html = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in ckpt_rows)
    return (
        '<div class="cards"><div class="card"><h3>Versions (this report)</h3>'
        f"<table><tbody>{versions}</tbody></table></div>"
        f'<div class="card"><h3>Checkpoint</h3><table><tbody>{ckpt_html}</tbody></table></div></div>'
        f"<h3>config.yaml</h3><pre>{esc(c['config']['text'])}</pre>"
    )


def render_html(content: dict[str, Any], figures: dict[str, str]) -> str:
    """The report page.

    Args:
        content: the report data (:func:`~dermseg.report.collect.collect_report`).
        figures: ``data:`` URIs of the plots (:func:`~dermseg.report.figures.all_figures`).

    Returns:
        The HTML document, self-contained (no external resource).
    """
    bodies = {
        "summary": _summary(content),
        "attributes": _attributes(content),
        "curves": _curves(content, figures),
        "roc": _roc(content, figures),
        "pr": _pr(content, figures),
        "thresholds": _thresholds(content, figures),
        "gallery": _gallery(content),
        "config": _config(content),
    }
    return page(content, SECTIONS, bodies, _header(content), _nav())


def page(
    content: dict[str, Any],
    sections: tuple[tuple[str, str], ...],
    bodies: dict[str, str],
    header: str,
    nav: str,
) -> str:
    """The self-contained HTML document around a report's sections (``(id, title)`` in page
    order, ``bodies[id]`` their HTML), with its header, navigation, style and footer."""
    main = "".join(
        f'<section id="{key}"><h2>{esc(title)}</h2>{bodies[key]}</section>' for key, title in sections
    )
    run = content["run"]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(run['name'])} \u2013 dermseg report</title><style>{_CSS}</style></head><body>"
        f"{header}{nav}<main>{main}</main>"
        f"<footer>Written by dermseg {esc(content['versions']['dermseg'])} "
        f"on {esc(_when(run['generated']))}. "
        "This file is self-contained: its images are embedded and it needs no network.</footer>"
        "</body></html>\n"
    )
