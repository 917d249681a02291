"""The Series page, driven through the real app with AppTest: declare the order, label a series
by clicking the first image of each stage, click one out, and accept a model's proposal."""
from __future__ import annotations

import json

import numpy as np

import pyarrow as pa
from streamlit.testing.v1 import AppTest
from test_app import APP, TIMEOUT, run_page, sample  # noqa: F401 (sample: the fixture making the prepared sample the app's workspace)

from dashboard.common import PAGES
from serieslabeler import labels
from serieslabeler.store import Workspace, list_series


def page() -> AppTest:
    return run_page("series")


def clean(app: AppTest) -> AppTest:
    assert not app.exception, [e.message for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    return app


def truth_stages(workspace, series) -> list[str]:
    rows = dict(workspace.query_in("SELECT image_id, label FROM ground_truth WHERE image_id IN ({})", list(series.image_ids)))
    return [rows[i] for i in series.image_ids]


def test_series_page_labels_a_series_by_its_transitions(sample):
    app = clean(page())
    app.text_input(key="order_text").set_value("U,R,V,O").run()
    clean(app.button(key="declare_order").click().run())
    with Workspace.open(sample) as workspace:
        assert labels.vocabulary_order(workspace) == ["U", "R", "V", "O"]
        series = next(s for s in list_series(workspace) if s.key == app.selectbox(key="series").value)
        truth = truth_stages(workspace, series)
    firsts = [(stage, series.image_ids[i]) for i, stage in enumerate(truth) if i == 0 or truth[i - 1] != stage]
    for stage, image_id in firsts:
        app.selectbox(key="stage").set_value(stage).run()
        clean(app.button(key=f"start_{image_id}").click().run())
    stranger = next(i for i in series.image_ids if i not in dict((b, s) for s, b in firsts))
    clean(app.button(key=f"exclude_{stranger}").click().run())
    clean(app.button(key="save_series").click().run())
    assert any("Labeled" in s.value for s in app.success)
    with Workspace.open(sample) as workspace:
        current = labels.current_labels(workspace).set_index("image_id")
        for image_id, stage in zip(series.image_ids, truth):
            if image_id == stranger:
                assert image_id not in current.index
            else:
                assert (current.loc[image_id, "label"], current.loc[image_id, "source"]) == (stage, "series")
        assert labels.interaction_count(workspace) == len(firsts) + 1
        event = labels.events(workspace, 1)[0]
        assert event["action"] == "label_series" and event["author"] != ""


def page_on_a_series_with_a_proposal(sample) -> tuple[AppTest, list, int]:
    """Every series but the first labeled by its true boundaries, a model trained and predicting,
    the page open on the first: the page, the series and the interactions spent."""
    from serieslabeler.models import predict, train_model

    with Workspace.open(sample) as workspace:
        labels.add_labels(workspace, ["U", "R", "V", "O"], ordered=True)
        found = list_series(workspace)
        for series in found[1:]:
            truth = truth_stages(workspace, series)
            firsts = [(stage, series.image_ids[i]) for i, stage in enumerate(truth) if i == 0 or truth[i - 1] != stage]
            labels.label_series(workspace, series, firsts)
        predict(workspace, train_model(workspace).id)
        spent = labels.interaction_count(workspace)
    app = clean(page())
    app.selectbox(key="series").set_value(found[0].key).run()
    return app, found, spent


def test_series_page_accepts_a_model_proposal(sample):
    from serieslabeler.loop import propose_series

    app, found, spent = page_on_a_series_with_a_proposal(sample)
    with Workspace.open(sample) as workspace:
        weight = propose_series(workspace, found[0]).time_weight
    said = [c.value for c in app.caption if c.value.startswith("Proposal: model")]
    assert len(said) == 1 and (f"weight {weight:g}" in said[0] if weight > 0 else "stage timing not used" in said[0]), said
    clean(app.button(key="accept_proposal").click().run())
    assert any("Accepted model" in s.value for s in app.success)
    with Workspace.open(sample) as workspace:
        assert labels.interaction_count(workspace) == spent + 1
        decided = labels.current_labels(workspace).set_index("image_id").loc[list(found[0].image_ids)]
        ranks = [["U", "R", "V", "O"].index(s) for s in decided["label"]]
        assert ranks == sorted(ranks) and set(decided["source"]) == {"series"}


def test_series_page_corrects_a_proposal_before_saving_it_as_one_event(sample):
    app, found, spent = page_on_a_series_with_a_proposal(sample)
    clean(app.button(key="correct_proposal").click().run())
    assert any("Correcting model" in c.value for c in app.caption)
    proposed = band_rows(app)["proposal"]
    assert band_rows(app)["draft"] == proposed  # the draft starts as the proposal
    last_start = max(i for i in range(1, len(proposed)) if proposed[i] != proposed[i - 1])
    image_id = found[0].image_ids[last_start]
    clean(app.button(key=f"unmark_{image_id}").click().run())  # the last stage starts nowhere: one boundary removed
    clean(app.button(key="save_series").click().run())
    assert any("(2 interaction(s))" in s.value.replace("\\", "") for s in app.success), [s.value for s in app.success]
    with Workspace.open(sample) as workspace:
        assert labels.interaction_count(workspace) == spent + 2
        action, details = workspace.db.execute("SELECT action, details FROM label_events ORDER BY id DESC LIMIT 1").fetchone()
        assert action == "label_series" and json.loads(details)["proposal"] is not None
        decided = labels.current_labels(workspace).set_index("image_id").loc[list(found[0].image_ids)]["label"].tolist()
    assert decided == proposed[:last_start] + [proposed[last_start - 1]] * (len(proposed) - last_start)


def test_the_proposal_follows_the_drafts_exclusions_so_accepting_it_never_starts_a_stage_on_a_clicked_out_photo(sample):
    app, found, spent = page_on_a_series_with_a_proposal(sample)
    proposed = band_rows(app)["proposal"]
    first_turn = next(i for i in range(1, len(proposed)) if proposed[i] != proposed[i - 1])
    image_id = found[0].image_ids[first_turn]
    clean(app.button(key=f"exclude_{image_id}").click().run())  # the photo where the proposal turned a stage
    clean(app.button(key="accept_proposal").click().run())
    assert any("Accepted model" in s.value for s in app.success)
    with Workspace.open(sample) as workspace:
        assert labels.interaction_count(workspace) == spent + 1 + 1  # the proposal, the photo clicked out
        current = labels.current_labels(workspace).set_index("image_id")
        assert image_id not in current.index and found[0].image_ids[first_turn + 1] in current.index


def test_next_series_to_label_jumps_past_the_series_already_labeled_by_their_stages(sample):
    with Workspace.open(sample) as workspace:
        labels.add_labels(workspace, ["U", "R", "V", "O"], ordered=True)
        found = list_series(workspace)
        labels.label_series(workspace, found[1], [("U", found[1].image_ids[0])])
    app = clean(page())
    app.selectbox(key="series").set_value(found[0].key).run()
    assert any(f"{len(found) - 1} series without series labels yet" in c.value for c in app.caption)
    clean(app.button(key="next_series").click().run())
    assert app.selectbox(key="series").value == found[2].key  # found[1] has series labels already


def test_placing_moving_and_unmarking_a_stage_start_draws_the_page_once_per_click(sample, monkeypatch):
    """Boundary clicks change the draft in their callback: one render per click (each is an
    expert interaction), the draft follows every click, and Reset draft empties it."""
    from serieslabeler import views

    with Workspace.open(sample) as workspace:
        labels.add_labels(workspace, ["U", "R", "V", "O"], ordered=True)
    app = clean(page())
    with Workspace.open(sample) as workspace:
        series = next(s for s in list_series(workspace) if s.key == app.selectbox(key="series").value)
    first, second = series.image_ids[0], series.image_ids[1]
    drawn = []
    real = views.image_details
    monkeypatch.setattr(views, "image_details", lambda *args, **kwargs: drawn.append(args) or real(*args, **kwargs))
    clean(app.button(key=f"start_{first}").click().run())
    assert len(drawn) == 1
    assert app.button(key=f"unmark_{first}").label == "Unmark U"
    clean(app.button(key=f"start_{second}").click().run())
    assert [b.key for b in app.button if b.key and b.key.startswith("unmark_")] == [f"unmark_{second}"], "U starts once: the mark moved"
    clean(app.button(key=f"unmark_{second}").click().run())
    assert not [b for b in app.button if b.key and b.key.startswith("unmark_")]
    clean(app.button(key=f"exclude_{first}").click().run())
    assert app.button(key=f"exclude_{first}").label == "Include"
    clean(app.button(key="reset_series").click().run())
    assert app.button(key=f"exclude_{first}").label == "Exclude"
    assert len(drawn) == 5


def test_an_image_clicked_out_of_a_series_stays_out_when_the_series_is_labeled_again(sample):  # noqa: F811 (the imported fixture)
    with Workspace.open(sample) as workspace:
        labels.add_labels(workspace, ["U", "R", "V", "O"], ordered=True)
    app = clean(page())
    with Workspace.open(sample) as workspace:
        series = next(s for s in list_series(workspace) if s.key == app.selectbox(key="series").value)
        stake, second, moved = series.image_ids[3], series.image_ids[8], series.image_ids[9]
        labels.label_series(workspace, series, [("U", series.image_ids[0]), ("R", second)], exclude=[stake], author="expert")
        before = labels.interaction_count(workspace)
    app = clean(page())
    assert app.button(key=f"exclude_{stake}").label == "Include", "shown clicked out, as it was left"
    app.selectbox(key="stage").set_value("R").run()
    clean(app.button(key=f"start_{moved}").click().run())
    clean(app.button(key="save_series").click().run())
    with Workspace.open(sample) as workspace:
        current = labels.current_labels(workspace).set_index("image_id")
        assert stake not in current.index and current.loc[second, "label"] == "U"
        assert labels.interaction_count(workspace) - before == 1, "one boundary moved; the stake stays out for free"
    clean(app.button(key=f"exclude_{stake}").click().run())
    assert app.button(key=f"exclude_{stake}").label == "Exclude"
    clean(app.button(key="save_series").click().run())
    with Workspace.open(sample) as workspace:
        assert labels.current_labels(workspace).set_index("image_id").loc[stake, "label"] == "U"
        assert labels.interaction_count(workspace) - before == 2, "taking it back in is one click"
        assert not labels.rejected_labels(workspace).everything


def band_rows(app: AppTest) -> dict[str, list[str]]:
    """The stage band chart's data: row name -> stage per photo position."""
    chart = app.get("vega_lite_chart")[0].proto
    frame = pa.ipc.open_stream(chart.datasets[0].data.data).read_pandas().sort_values("position")
    return {row: list(part["stage"]) for row, part in frame.groupby("row")}


def test_the_current_labels_band_shows_every_accepted_label_of_the_series_whatever_its_source(sample):
    with Workspace.open(sample) as workspace:
        labels.add_labels(workspace, ["U", "R", "V", "O"], ordered=True)
        series = list_series(workspace)[0]
        labels.label_images(workspace, series.image_ids[:2], "U")
    app = clean(page())
    app.selectbox(key="series").set_value(series.key).run()
    current = band_rows(clean(app))["current labels"]
    assert current == ["U", "U"] + ["(unlabeled)"] * (len(series) - 2)


def test_the_home_workflow_leads_to_the_series_page_and_checks_it_once_a_series_is_labeled(sample):
    def series_step() -> str:
        app = clean(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
        return next(link.proto.label for link in app.get("page_link") if link.proto.label.startswith("6. "))

    assert series_step().strip() == "6. Series"
    assert next(spec.section for spec in PAGES if spec.file == "series.py") == "Iteration"  # the menu: a labeling page
    with Workspace.open(sample) as workspace:
        labels.add_labels(workspace, ["U", "R", "V", "O"], ordered=True)
        series = list_series(workspace)[0]
        labels.label_series(workspace, series, [("U", series.image_ids[0])])
    assert series_step() == "6. Series  ✓"


def test_train_and_route_decodes_each_series_as_ordered_stages_when_the_vocabulary_is_ordered(sample):
    """The page routes what ``route --monotone`` would: its preview counts and its pending labels
    come from each series decoded as non-decreasing stages (toggle on by default)."""
    from serieslabeler.loop import route_mask, routing_labels

    _, found, _ = page_on_a_series_with_a_proposal(sample)
    app = clean(run_page("train"))
    decode = next(t for t in app.toggle if t.label == "Decode each series as ordered stages")
    assert decode.value is True
    threshold = next(s for s in app.slider if s.label == "Confidence threshold")
    clean(threshold.set_value(0.5).run())
    with Workspace.open(sample) as workspace:
        model_id = workspace.db.execute("SELECT MAX(id) FROM models").fetchone()[0]
        decoded = routing_labels(workspace, model_id, monotone=True)
    expected = int(route_mask(decoded.labels, decoded.confidence, 0.5).sum())
    shown = next(m.value for m in app.metric if m.label == "Would be pseudo-labeled")
    assert int(shown) == expected > 0
    clean(next(b for b in app.button if b.label == "Route").click().run())
    with Workspace.open(sample) as workspace:
        pending = labels.current_labels(workspace).query("status == 'pending'").set_index("image_id")
    routed = route_mask(decoded.labels, decoded.confidence, 0.5)
    ids = decoded.image_ids[routed]
    assert len(pending) == expected and sorted(pending.index) == sorted(ids.tolist())
    assert pending.loc[ids, "label"].tolist() == decoded.labels[routed].tolist()
    assert np.allclose(pending.loc[ids, "confidence"].to_numpy(float), np.clip(decoded.confidence[routed], 0, 1), atol=1e-6)
    in_series = [pending.loc[i, "label"] for i in found[0].image_ids if i in pending.index]
    ranks = [["U", "R", "V", "O"].index(stage) for stage in in_series]
    assert in_series and ranks == sorted(ranks), in_series


def test_the_labeled_count_of_a_series_counts_accepted_labels_and_names_the_pending_ones(sample):
    """Routed pseudo-labels awaiting review were counted as "Labeled" above an empty band; after a
    save, the count and the band showed the labels from before it until the next click."""
    from serieslabeler.loop import route_predictions

    app, found, _ = page_on_a_series_with_a_proposal(sample)
    with Workspace.open(sample) as workspace:
        model_id = workspace.db.execute("SELECT MAX(id) FROM models").fetchone()[0]
        routed = route_predictions(workspace, model_id, 0.0, monotone=True, support=None)
    assert set(found[0].image_ids) <= set(routed.pseudo_ids.tolist())
    app.run()
    labeled = next(m for m in clean(app).metric if m.label == "Labeled")
    assert labeled.value == "0" and labeled.delta == f"{len(found[0])} pending review"
    clean(app.button(key="accept_proposal").click().run())
    assert any("Accepted model" in s.value for s in app.success)
    labeled = next(m for m in app.metric if m.label == "Labeled")
    assert labeled.value == str(len(found[0])) and not labeled.delta, "the counts follow the save at once"
    assert "(unlabeled)" not in band_rows(app)["current labels"], "so does the band"


def test_metrics_show_decoded_scores_beside_per_photo_ones_with_classes_in_stage_order(sample):
    from serieslabeler.loop import stored_evaluation

    _, found, _ = page_on_a_series_with_a_proposal(sample)
    with Workspace.open(sample) as workspace:
        model_id = workspace.db.execute("SELECT MAX(id) FROM models").fetchone()[0]
        result = stored_evaluation(workspace, model_id)
    raw, decoded = result["report"]["macro"]["F"], result["decoded_report"]["macro"]["F"]
    app = clean(run_page("metrics"))
    scores = app.radio(key="metrics_scores")
    assert scores.options == ["each photo", "each series decoded as ordered stages"] and scores.value == "each photo"
    assert any(f"Macro F per photo {raw:.3f}, decoded along each series {decoded:.3f}" in c.value for c in app.caption)
    assert next(m.value for m in app.metric if m.label == "Macro F") == f"{raw:.2f}"
    clean(scores.set_value("each series decoded as ordered stages").run())
    assert next(m.value for m in app.metric if m.label == "Macro F") == f"{decoded:.2f}"
    staged = [c for c in ["U", "R", "V", "O"] if c in result["report"]["classes"]]
    specs = [json.loads(chart.proto.spec) for chart in app.get("vega_lite_chart")]
    confusion = next(spec for spec in specs if "layer" in spec and spec["layer"][0]["encoding"].get("y", {}).get("field") == "truth")
    encoding = confusion["layer"][0]["encoding"]
    assert encoding["x"]["sort"] == staged and encoding["y"]["sort"] == staged, "stages read in their order, not alphabetically"


def test_the_series_page_saves_the_split_that_routing_and_scores_decode_by(sample):
    from serieslabeler.store import saved_split

    app = clean(page())
    split = app.selectbox(key="split")
    attribute = next(option for option in split.options if option != "(whole subject)")
    clean(split.set_value(attribute).run())
    clean(app.button(key="save_split").click().run())
    with Workspace.open(sample) as workspace:
        assert saved_split(workspace) == attribute
    again = clean(page())
    assert again.selectbox(key="split").value == attribute, "the saved split is the page's default"
    assert not [b for b in again.button if b.key == "save_split"], "nothing to save while the page shows the saved split"


def test_days_covered_is_the_span_of_the_series_shown_even_when_a_split_starts_it_late(sample, tmp_path):
    """Days count from the subject's first photo; a series split by an attribute (a camera
    changed on day 10) covers only its own photos."""
    import dataclasses

    import pandas as pd
    from conftest import SAMPLE

    from serieslabeler import views
    from serieslabeler.demo import SAMPLE_MAPPING
    from serieslabeler.ingest import ingest

    metadata = pd.read_csv(SAMPLE / "metadata.csv")
    metadata["camera"] = np.where(metadata["day"] < 10, "A", "B")
    metadata.to_csv(tmp_path / "metadata.csv", index=False)
    with Workspace.open(sample) as workspace:
        ingest(workspace, SAMPLE / "images", tmp_path / "metadata.csv",
               dataclasses.replace(SAMPLE_MAPPING, attributes=(*SAMPLE_MAPPING.attributes, "camera")))
        series = next(s for s in list_series(workspace, "camera") if s.value == "B")
        days = views.image_details(workspace, list(series.image_ids))["days"]
    app = clean(page())
    clean(app.selectbox(key="split").set_value("camera").run())
    clean(app.selectbox(key="series").set_value(series.key).run())
    assert days.min() > 9, "the series starts days after the subject's first photo"
    covered = next(m for m in app.metric if m.label == "Days covered")
    assert covered.value == f"{days.max() - days.min():.0f}"
