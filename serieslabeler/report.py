"""A self-contained HTML report of a workspace for stakeholders: one file that opens offline.

Sections: the collection (subjects, time span), the effort (interactions, images per
interaction, minutes), per-class precision/recall/F1 on held-out subjects with the confusion
matrix, learning curves over the models, the routing threshold with its audited precision and
interval, and a few example images per class (thumbnails inlined as base64).

Charts are static inline SVG drawn here in Python: the installed packages ship no standalone
vega / vega-lite / vega-embed JavaScript to inline (Streamlit's bundle holds only hashed module
chunks and there is no vl-convert), and a report that loads them from a CDN would not open
offline. Every string from the workspace is HTML-escaped.
"""
from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from serieslabeler.errors import PipelineError
from serieslabeler.labels.log import interaction_count
from serieslabeler.labels.vocabulary import vocabulary_order
from serieslabeler.loop.audit import audit_report, load_audit
from serieslabeler.loop.iterate import effort_since
from serieslabeler.metrics.classification import in_stage_order
from serieslabeler.models.evaluation import evaluate_model
from serieslabeler.models.files import list_models
from serieslabeler.store.queries import has_ground_truth, interactions_until
from serieslabeler.store.summary import summarize
from serieslabeler.store.workspace import Workspace, write_atomic

EXAMPLES_PER_CLASS = 4
LEARNING_CURVE_MODELS = 12
SECTIONS = ("collection", "effort", "quality", "learning", "threshold", "examples")
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")
CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222;line-height:1.4}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
th{background:#f5f5f5} .figures{display:flex;gap:2rem;flex-wrap:wrap} .figure{font-size:1.6rem;font-weight:600}
.caption{color:#666;font-size:.9rem} .examples img{width:96px;height:96px;object-fit:cover;margin:2px;border-radius:4px}
"""


def build_report(workspace: Workspace, title: str | None = None) -> str:
    """The report as one HTML document (see the module docstring)."""
    info = summarize(workspace)
    models = list_models(workspace)
    truth = has_ground_truth(workspace)
    name = title or workspace.root.name
    body = [
        f"<h1>{escape(name)}</h1><p class='caption'>Labeling report of workspace {escape(str(workspace.root))}</p>",
        _section("collection", "The collection", _collection(info)),
        _section("effort", "Effort", _effort(workspace, info)),
        _section("quality", "Quality per class on held-out subjects", _quality(workspace, models, truth)),
        _section("learning", "Learning curves", _learning(workspace, models, truth)),
        _section("threshold", "Routing threshold and audited precision", _threshold(workspace)),
        _section("examples", "Examples per class", _examples(workspace)),
    ]
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(name)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")


def _section(key: str, heading: str, content: str) -> str:
    return f"<section id='{key}'><h2>{escape(heading)}</h2>{content}</section>"


def _figures(pairs: list[tuple[str, object]]) -> str:
    cells = "".join(f"<div><div class='figure'>{escape(str(v))}</div><div class='caption'>{escape(k)}</div></div>" for k, v in pairs)
    return f"<div class='figures'>{cells}</div>"


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _collection(info: dict) -> str:
    first, last = info["date_range"]
    pairs = [("images", info["images"]), ("subjects", info["subjects"]), ("from", (first or "-")[:10]), ("to", (last or "-")[:10])]
    subjects = [[s["subject"], s["images"], s["days"], s["first"][:10], s["last"][:10]] for s in info["subjects_detail"][:50]]
    more = len(info["subjects_detail"]) - len(subjects)
    note = f"<p class='caption'>and {more} more subjects</p>" if more > 0 else ""
    return _figures(pairs) + _table(["subject", "images", "days", "first", "last"], subjects) + note


def _effort(workspace: Workspace, info: dict) -> str:
    interactions = interaction_count(workspace)
    labeled = workspace.db.execute("SELECT COUNT(*) FROM current_labels WHERE status='accepted'").fetchone()[0]
    minutes = effort_since(workspace, 0)["minutes"]
    per = f"{labeled / interactions:.1f}" if interactions else "-"
    pairs = [("interactions", interactions), ("accepted labels", labeled), ("labels per interaction", per), ("minutes labeling", minutes)]
    sources = _table(["source", "labels (pending pseudo-labels included)"], [[k, v] for k, v in info["labels_by_source"].items()])
    return _figures(pairs) + sources + "<p class='caption'>Minutes: the gaps between labeling actions, each capped at 5 minutes.</p>"


def _quality(workspace: Workspace, models: list[dict], truth: bool) -> str:
    if not models:
        return "<p>No model trained yet.</p>"
    if not truth:
        return "<p>This collection has no ground truth, so there is no held-out evaluation.</p>"
    evaluation = evaluate_model(workspace, models[0]["id"])
    report = in_stage_order(evaluation.report, vocabulary_order(workspace))
    rows = [[c["label"], c["precision"], c["recall"], c["f1"], c["support"]] for c in report["per_class"]]
    decoded = evaluation.decoded_report
    caption = (f"<p class='caption'>Model {evaluation.model_id} on {evaluation.test_images} images of the held-out subjects "
               f"{escape(', '.join(evaluation.held_out_subjects))}; {escape(evaluation.method)}. Macro F {report['macro']['F']:.3f}, "
               f"top-1 {report['top1']:.3f}"
               + ("" if not decoded else f"; each series decoded as ordered stages: macro F {decoded['macro']['F']:.3f}, top-1 {decoded['top1']:.3f}")
               + ".</p>")
    bars = _bar_chart([c["label"] for c in report["per_class"]],
                      {m: [c[m] for c in report["per_class"]] for m in ("precision", "recall", "f1")})
    confusion = _table(["truth \\ predicted", *report["classes"]], [[c, *row] for c, row in zip(report["classes"], report["confusion"])])
    return caption + _table(["class", "precision", "recall", "F1", "support"], rows) + bars + "<h3>Confusion matrix</h3>" + confusion


def _learning(workspace: Workspace, models: list[dict], truth: bool) -> str:
    if not models:
        return "<p>No model trained yet.</p>"
    chosen = list(reversed(models[:LEARNING_CURVE_MODELS]))
    xs = [interactions_until(workspace, m["created_at"]) for m in chosen]
    series = {"validation macro F (your labels)": [(m["metrics"].get("validation") or {}).get("macro", {}).get("F") for m in chosen]}
    if truth:
        series["held-out macro F (ground truth)"] = [evaluate_model(workspace, m["id"]).report["macro"]["F"] for m in chosen]
    rows = [[m["id"], m["training_set"], x, *[s[i] for s in series.values()]] for i, (m, x) in enumerate(zip(chosen, xs))]
    return (_line_chart(xs, series, "interactions") + _table(["model", "labeled images", "interactions", *series], rows))


def _threshold(workspace: Workspace) -> str:
    row = workspace.db.execute("SELECT params FROM samples WHERE strategy='routed' ORDER BY id DESC LIMIT 1").fetchone()
    routed = workspace.db.execute("SELECT COUNT(*) FROM label_events WHERE action='add_pseudo'").fetchone()[0]
    if row is None and not routed:
        return "<p>Nothing routed yet.</p>"
    parts = []
    if row is not None:
        params = json.loads(row[0])
        parts.append(f"<p>Latest routing threshold {escape(json.dumps(params.get('threshold')))} "
                     f"(model {escape(str(params.get('model')))}).</p>")
    answered = workspace.db.execute(
        "SELECT a.id FROM audits a WHERE EXISTS (SELECT 1 FROM audit_items i WHERE i.audit_id=a.id AND i.answer IS NOT NULL) "
        "ORDER BY a.id DESC LIMIT 1"
    ).fetchone()
    audit = None if answered is None else audit_report(load_audit(workspace, answered[0]))
    if audit is None:
        parts.append("<p>No audit of the routed labels yet: their precision is not measured. "
                     "Run 'serieslabeler audit ... draw' and answer it.</p>")
        return "".join(parts)
    overall = audit["overall"]
    parts.append(_figures([("audited precision", f"{overall['estimate']:.1%}"),
                           ("95% interval", f"{overall['low']:.1%} to {overall['high']:.1%}"),
                           ("answers", f"{audit['answered']} of {audit['routed']} routed (model {audit['model_id']})")]))
    parts.append(_table(["class", "right", "audited"], [[k, v["successes"], v["n"]] for k, v in audit["per_class"].items()]))
    return "".join(parts)


def _examples(workspace: Workspace) -> str:
    rows = workspace.db.execute(
        "SELECT label, image_id FROM current_labels WHERE status='accepted' ORDER BY label, confidence DESC, image_id"
    ).fetchall()
    by_label: dict[str, list[int]] = {}
    for label, image_id in rows:
        if len(by_label.setdefault(label, [])) < EXAMPLES_PER_CLASS:
            by_label[label].append(image_id)
    if not by_label:
        return "<p>No labels yet.</p>"
    order = vocabulary_order(workspace) or []
    parts = []
    for label, ids in sorted(by_label.items(), key=lambda item: (item[0] not in order, order.index(item[0]) if item[0] in order else 0)):
        images = "".join(f"<img alt='{escape(label)}' src='{_thumbnail_uri(path)}'>" for path in workspace.thumbnail_paths(ids))
        parts.append(f"<h3>{escape(label)}</h3><div class='examples'>{images}</div>")
    return "".join(parts)


def _thumbnail_uri(path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


# --- inline SVG charts ----------------------------------------------------------------------------
WIDTH, HEIGHT, MARGIN = 560, 240, 40


def _legend(names) -> str:
    return "".join(
        f"<text x='{MARGIN + 170 * i}' y='14' font-size='11' fill='{PALETTE[i % len(PALETTE)]}'>{escape(str(n))}</text>"
        for i, n in enumerate(names)
    )


def _axes(x_label: str) -> str:
    ticks = "".join(
        f"<text x='{MARGIN - 6}' y='{HEIGHT - MARGIN - v * (HEIGHT - 2 * MARGIN) + 4:.1f}' font-size='10' text-anchor='end'>{v:.1f}</text>"
        for v in (0.0, 0.5, 1.0)
    )
    return (f"<line x1='{MARGIN}' y1='{HEIGHT - MARGIN}' x2='{WIDTH - 10}' y2='{HEIGHT - MARGIN}' stroke='#999'/>"
            f"<line x1='{MARGIN}' y1='{MARGIN}' x2='{MARGIN}' y2='{HEIGHT - MARGIN}' stroke='#999'/>{ticks}"
            f"<text x='{WIDTH / 2}' y='{HEIGHT - 8}' font-size='11' text-anchor='middle'>{escape(x_label)}</text>")


def _y(value: float) -> float:
    return HEIGHT - MARGIN - value * (HEIGHT - 2 * MARGIN)


def _line_chart(xs: list[float], series: dict[str, list[float | None]], x_label: str) -> str:
    low, high = min(xs), max(xs)
    span = (high - low) or 1

    def x_of(x: float) -> float:
        return MARGIN + (x - low) / span * (WIDTH - MARGIN - 20)

    lines = []
    for i, values in enumerate(series.values()):
        points = [(x_of(x), _y(v)) for x, v in zip(xs, values) if v is not None]
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
        dots = "".join(f"<circle cx='{a:.1f}' cy='{b:.1f}' r='3' fill='{colour}'/>" for a, b in points)
        lines.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{path}'/>{dots}")
    ticks = "".join(f"<text x='{x_of(x):.1f}' y='{HEIGHT - MARGIN + 14}' font-size='10' text-anchor='middle'>{x}</text>" for x in sorted(set(xs)))
    return f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' role='img'>{_axes(x_label)}{ticks}{''.join(lines)}{_legend(series)}</svg>"


def _bar_chart(categories: list[str], series: dict[str, list[float]]) -> str:
    slot = (WIDTH - MARGIN - 20) / max(1, len(categories))
    bar = slot * 0.8 / max(1, len(series))
    rects = []
    for j, category in enumerate(categories):
        for i, values in enumerate(series.values()):
            x = MARGIN + j * slot + slot * 0.1 + i * bar
            rects.append(f"<rect x='{x:.1f}' y='{_y(values[j]):.1f}' width='{bar:.1f}' height='{HEIGHT - MARGIN - _y(values[j]):.1f}' "
                         f"fill='{PALETTE[i % len(PALETTE)]}'/>")
        rects.append(f"<text x='{MARGIN + (j + 0.5) * slot:.1f}' y='{HEIGHT - MARGIN + 14}' font-size='10' text-anchor='middle'>{escape(category)}</text>")
    return f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' role='img'>{_axes('class')}{''.join(rects)}{_legend(series)}</svg>"


def write_report(workspace: Workspace, out, title: str | None = None) -> int:
    """Write the report to ``out`` (an .html path); returns its size in bytes."""
    path = Path(out)
    if path.suffix.lower() not in (".html", ".htm"):
        raise PipelineError(f"--out {path}: the report is an HTML file; name it with .html")
    data = build_report(workspace, title).encode("utf-8")
    write_atomic(path, data)
    return len(data)
