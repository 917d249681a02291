"""The stakeholder report: one self-contained HTML file with every section, from the CLI and the app."""
from __future__ import annotations

from html.parser import HTMLParser

from conftest import cli
from test_app import (
    assert_clean,
    button,
    label_two_clusters_by_their_majority,
    run_page,
    sample,  # noqa: F401 (a fixture)
)

from serieslabeler.labels import label_images
from serieslabeler.loop import answer_audit, draw_audit, ground_truth
from serieslabeler.models import predict, train_model
from serieslabeler.report import SECTIONS
from serieslabeler.store import Workspace


class Outline(HTMLParser):
    """Section ids, inline images, scripts and external references of a parsed HTML document."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.svgs, self.external, self.text = [], [], 0, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "svg":
            self.svgs += 1
        for key in ("src", "href"):
            if attrs.get(key) and not attrs[key].startswith(("data:", "#")):
                self.external.append(attrs[key])

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Outline:
    outline = Outline()
    outline.feed(html)
    outline.close()
    return outline


def a_workspace_with_a_routed_audited_model(root) -> None:
    with Workspace.open(root) as ws:
        ids, truth, subjects = ground_truth(ws)
        chosen = subjects <= sorted(set(subjects))[5]
        for label in sorted(set(truth[chosen])):
            label_images(ws, ids[chosen & (truth == label)], label, author="test")
        label_images(ws, ids[:1], "<b>odd & name</b>", author="test")  # a user string that must be escaped
        model = train_model(ws, "head", feature_set="efficientnet_lite0@imagenet")
        predict(ws, model.id)
    assert cli("route", "--workspace", root, "--threshold", "0.0")[0] == 0
    with Workspace.open(root) as ws:
        audit = draw_audit(ws, 8, seed=0)
        answer_audit(ws, [i.image_id for i in audit.items], correct=True)


def check_report(html: str) -> Outline:
    outline = parse(html)
    assert outline.sections == list(SECTIONS)
    assert outline.external == []  # opens offline: nothing loaded from elsewhere
    assert outline.images and all(src.startswith("data:image/jpeg;base64,") for src in outline.images)
    assert outline.svgs >= 2  # per-class bars and the learning curve
    text = " ".join(outline.text)
    assert "<b>odd & name</b>" in text and "<b>odd" not in html  # escaped in the file, intact once parsed
    assert "audited precision" in text and "95% interval" in text and "Confusion matrix" in text
    return outline


def test_the_report_from_the_command_line_has_every_section(bananas_embedded, tmp_path):
    a_workspace_with_a_routed_audited_model(bananas_embedded)
    out = tmp_path / "report.html"
    code, data = cli("report", "--workspace", bananas_embedded, "--out", out)
    assert code == 0 and data["bytes"] == out.stat().st_size
    check_report(out.read_text())
    code, data = cli("report", "--workspace", bananas_embedded, "--out", tmp_path / "report.pdf")
    assert code == 2 and "HTML file" in data["error"] and not (tmp_path / "report.pdf").exists()


def test_the_report_from_the_metrics_page_button(sample):  # noqa: F811 (the imported fixture)
    label_two_clusters_by_their_majority(sample)
    with Workspace.open(sample) as ws:
        model = train_model(ws, "head")
        predict(ws, model.id)
    app = run_page("metrics")
    button(app, "Build the stakeholder report").click().run()
    assert_clean(app)
    download = app.get("download_button")
    assert any(d.proto.label == "Download report.html" for d in download)
    outline = parse((sample / "reports" / "report.html").read_text())  # the bytes the button offers
    assert outline.sections == list(SECTIONS) and outline.external == []


def test_with_ordered_stages_the_report_reads_classes_in_stage_order_and_gives_decoded_scores(bananas_embedded):
    from serieslabeler.labels import add_labels, label_series
    from serieslabeler.store import list_series
    from serieslabeler.report import build_report

    with Workspace.open(bananas_embedded) as ws:
        add_labels(ws, ["U", "R", "V", "O"], ordered=True)
        truth = dict(ws.db.execute("SELECT image_id, label FROM ground_truth").fetchall())
        for series in list_series(ws)[:6]:
            stages = [truth[i] for i in series.image_ids]
            label_series(ws, series, [(s, series.image_ids[k]) for k, s in enumerate(stages) if k == 0 or stages[k - 1] != s])
        predict(ws, train_model(ws, "head", feature_set="efficientnet_lite0@imagenet").id)
        text = " ".join(parse(build_report(ws)).text)
    assert "each series decoded as ordered stages: macro F" in text
    header = text.split("truth \\ predicted", 1)[1].split()[:4]
    assert header == ["U", "R", "V", "O"], header
    assert text.split("Examples per class", 1)[1].split()[:4] == ["U", "R", "V", "O"]
