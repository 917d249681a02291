"""Series: listing, ordered vocabularies, labeling a series by its boundaries, the CLI round trip."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from serieslabeler import labels
from serieslabeler.cli.main import main
from serieslabeler.errors import PipelineError
from serieslabeler.store import Workspace, get_series, list_series, next_series_to_label, parse_series_key, series_keys
from tests.conftest import cli

ORDER = ["U", "R", "V", "O"]


@pytest.fixture
def ws(bananas_workspace):
    with Workspace.open(bananas_workspace) as workspace:
        yield workspace


def truth_of(workspace, image_ids) -> list[str]:
    rows = dict(workspace.query_in("SELECT image_id, label FROM ground_truth WHERE image_id IN ({})", list(image_ids)))
    return [rows[i] for i in image_ids]


def true_boundaries(workspace, series) -> list[tuple[str, int]]:
    truth = truth_of(workspace, series.image_ids)
    return [(stage, series.image_ids[i]) for i, stage in enumerate(truth) if i == 0 or truth[i - 1] != stage]


def label_rows(workspace) -> list[tuple]:
    return [tuple(r) for r in workspace.db.execute("SELECT * FROM current_labels ORDER BY image_id")]


def test_series_lists_each_subject_in_time_order_and_splits_by_attribute(ws):
    found = list_series(ws)
    with_subjects = {r[0] for r in ws.db.execute("SELECT name FROM subjects")}
    assert len(found) == 11 and {s.key for s in found} == with_subjects
    for series in found:
        assert len(series) == 20
        assert list(series.taken_at) == sorted(series.taken_at)
    by_group = list_series(ws, split_by="group")
    assert sum(len(s) for s in by_group) == 220
    one = by_group[0]
    assert one.attribute == "group" and get_series(ws, one.key).image_ids == one.image_ids
    assert series_keys(ws) == [s.key for s in found] and series_keys(ws, "group") == [s.key for s in by_group]
    assert parse_series_key("11/group=F") == ("11", "group", "F")
    assert parse_series_key("11/view=front/left") == ("11", "view", "front/left"), "a value may hold a slash"
    assert parse_series_key("site/11/view=front") == ("site/11", "view", "front"), "so may a subject"
    assert parse_series_key("site/11") == ("site/11", None, None)
    with pytest.raises(PipelineError, match="unknown series '99'"):
        get_series(ws, "99")
    with pytest.raises(PipelineError, match="no attribute 'part'"):
        get_series(ws, "11/part=arm")


def test_the_series_left_to_label_and_the_next_one_after_a_given_series(ws):
    labels.add_labels(ws, ORDER, ordered=True)
    keys = series_keys(ws)
    labels.label_series(ws, get_series(ws, keys[1]), [("U", get_series(ws, keys[1]).image_ids[0])])
    labels.label_images(ws, get_series(ws, keys[2]).image_ids[:3], "R")  # labels of another source do not count
    left = series_keys(ws, without_series_labels=True)
    assert left == [k for k in keys if k != keys[1]]
    assert next_series_to_label(keys, left, keys[0]) == keys[2]
    assert next_series_to_label(keys, left, keys[-1]) == keys[0]  # round to the first
    by_group = series_keys(ws, "group")
    labeled = next(k for k in by_group if k.startswith(f"{keys[1]}/"))
    assert labeled not in series_keys(ws, "group", without_series_labels=True)
    assert len(series_keys(ws, "group", without_series_labels=True)) == len(by_group) - 1
    for key in keys[2:]:
        labels.label_series(ws, get_series(ws, key), [("U", get_series(ws, key).image_ids[0])])
    left = series_keys(ws, without_series_labels=True)
    assert left == [keys[0]] and next_series_to_label(keys, left, keys[0]) is None  # no other series is left


def test_ordered_vocabulary_is_an_event_that_undo_and_redo_follow(ws):
    assert labels.vocabulary_order(ws) is None
    event = labels.add_labels(ws, ORDER, "ann", ordered=True)
    assert event.action == "vocab_add" and labels.vocabulary_order(ws) == ORDER
    reordered = labels.add_labels(ws, ["u", "V", "R", "O"], "ann", ordered=True)
    assert reordered.action == "vocab_order" and labels.vocabulary_order(ws) == ["U", "V", "R", "O"]
    labels.undo(ws, author="ann")
    assert labels.vocabulary_order(ws) == ORDER
    labels.redo(ws, author="ann")
    assert labels.vocabulary_order(ws) == ["U", "V", "R", "O"]
    labels.rename_label(ws, "V", "Ripe", "ann")
    assert labels.vocabulary_order(ws) == ["U", "Ripe", "R", "O"]
    labels.undo(ws, 3, author="ann")
    assert labels.vocabulary_order(ws) is None and labels.vocabulary(ws) == []
    with pytest.raises(PipelineError, match="appears twice"):
        labels.add_labels(ws, ["U", "R", "u"], ordered=True)


def test_a_series_labeled_by_boundaries_gives_each_image_its_stage(ws):
    labels.add_labels(ws, ORDER, ordered=True)
    series = get_series(ws, "11")
    bounds = true_boundaries(ws, series)
    stranger = series.image_ids[7]
    event = labels.label_series(ws, series, bounds, exclude=[stranger], author="ann")
    assert event.source == "series" and event.interactions == len(bounds) + 1
    current = labels.current_labels(ws).set_index("image_id")
    truth = truth_of(ws, series.image_ids)
    for image_id, stage in zip(series.image_ids, truth):
        if image_id == stranger:
            assert image_id not in current.index
        else:
            assert current.loc[image_id, "label"] == stage and current.loc[image_id, "source"] == "series"
    confidence = current.loc[[i for i in series.image_ids if i != stranger], "confidence"].to_numpy()
    first = {image for _, image in bounds}
    assert all(current.loc[i, "confidence"] == 1.0 for i in first)
    assert confidence.min() < 1.0 and np.all(confidence > 0)
    assert labels.series_boundaries(ws, series) == bounds
    # moving one boundary by one image costs one interaction
    moved = [bounds[0], (bounds[1][0], series.image_ids[series.position(bounds[1][1]) + 1]), *bounds[2:]]
    assert labels.label_series(ws, series, moved, author="ann").interactions == 1
    assert labels.boundary_changes(moved, moved) == 0


def test_undo_of_a_series_label_restores_previous_labels_exactly(ws):
    labels.add_labels(ws, ORDER, ordered=True)
    series = get_series(ws, "12")
    ids = series.image_ids
    labels.label_images(ws, [ids[0], ids[5]], "R", author="ann")
    labels.add_pseudo_labels(ws, [ids[9]], ["V"], [0.7], model_id=None)
    before = label_rows(ws)
    labels.label_series(ws, series, [("U", ids[0]), ("V", ids[8]), ("O", ids[15])], author="ann")
    assert label_rows(ws) != before
    labels.undo(ws, author="ann")
    assert label_rows(ws) == before
    labels.redo(ws, author="ann")
    assert [r[1] for r in label_rows(ws) if r[0] in ids] == ["U"] * 8 + ["V"] * 7 + ["O"] * 5
    assert labels.replay_labels(ws).equals(labels.current_labels(ws))


def test_label_series_refuses_bad_boundaries_and_writes_nothing(ws):
    series = get_series(ws, "13")
    ids = series.image_ids
    with pytest.raises(PipelineError, match="not ordered"):
        labels.label_series(ws, series, [("U", ids[0])])
    labels.add_labels(ws, ORDER, ordered=True)
    cases = [
        ([("X", ids[0])], "stage 'X' is not in the ordered vocabulary"),
        ([("U", 99999)], "image 99999 is not in series '13'"),
        ([("V", ids[0]), ("R", ids[4])], "out of order at 'R@"),
        ([("U", ids[6]), ("R", ids[4])], "out of order at 'R@"),
        ([], "at least one boundary"),
    ]
    for bounds, message in cases:
        with pytest.raises(PipelineError, match=message):
            labels.label_series(ws, series, bounds)
    with pytest.raises(PipelineError, match="cannot also be excluded"):
        labels.label_series(ws, series, [("U", ids[0])], exclude=[ids[0]])
    assert label_rows(ws) == []


def test_cli_label_series_round_trip_and_bad_input(bananas_workspace):
    ws = bananas_workspace
    assert cli("vocab", "--workspace", ws, "--add", "U,R,V,O", "--ordered")[1]["order"] == ORDER
    code, listed = cli("series", "--workspace", ws)
    assert code == 0 and len(listed["series"]) == 11
    code, shown = cli("series", "--workspace", ws, "--series", "11")
    ids = shown["image_ids"]
    with Workspace.open(ws) as workspace:
        bounds = true_boundaries(workspace, get_series(workspace, "11"))
    text = labels.format_boundaries(bounds)
    code, data = cli("label-series", "--workspace", ws, "--series", "11", "--boundaries", text, "--exclude", str(ids[3]))
    assert code == 0, data
    assert data["events"][0]["interactions"] == len(bounds) + 1 and data["interactions"] == len(bounds) + 1
    shown = cli("series", "--workspace", ws, "--series", "11")[1]
    assert shown["boundaries"] == [list(b) for b in bounds]
    photos = shown["photos"]
    assert [p["image_id"] for p in photos] == ids and [p["taken_at"] for p in photos] == sorted(p["taken_at"] for p in photos)
    assert [p["clicked_out"] for p in photos] == [i == ids[3] for i in ids]
    assert photos[3]["label"] is None and all(p["label"] and p["source"] == "series" for p in photos if p["image_id"] != ids[3])
    assert photos[0]["label"] == bounds[0][0] and photos[-1]["label"] == bounds[-1][0]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["series", "--workspace", str(ws), "--series", "11"]) == 0
    listed = printed.getvalue().splitlines()
    assert len(listed) == 1 + len(ids) and listed[4].startswith(f"  image {ids[3]}  ") and listed[4].endswith("clicked out of the series")
    with Workspace.open(ws) as workspace:
        files = dict(workspace.db.execute("SELECT id, file_name FROM images").fetchall())
    assert [p["file"] for p in photos] == [files[i] for i in ids]
    assert listed[4].startswith(f"  image {ids[3]}  {files[ids[3]]}  "), "the photo's file is named, to open it"
    exported = ws.parent / "labels.csv"
    assert cli("export", "--workspace", ws, "--format", "csv", "--out", exported)[0] == 0
    assert sum(",series," in line for line in exported.read_text().splitlines()) == len(ids) - 1
    bad = [
        (["--series", "99", "--boundaries", "U@1"], "unknown series '99'"),
        (["--series", "11", "--boundaries", f"X@{ids[0]}"], "stage 'X'"),
        (["--series", "11", "--boundaries", "U@99999"], "image 99999 is not in series '11'"),
        (["--series", "11", "--boundaries", f"R@{ids[0]},U@{ids[5]}"], "out of order at 'U@"),
        (["--series", "11", "--boundaries", "U12"], "not STAGE@IMAGE_ID"),
        (["--series", "11"], "--boundaries"),
    ]
    for argv, message in bad:
        code, data = cli("label-series", "--workspace", ws, *argv)
        assert code == 2 and message in data["error"], (argv, data)
    assert cli("undo", "--workspace", ws)[0] == 0
    assert cli("series", "--workspace", ws, "--series", "11")[1]["boundaries"] == []


def label_six_series_and_train(workspace):
    """The series in key order, and a head trained on the true boundaries of the first six."""
    from serieslabeler.models import train_model

    labels.add_labels(workspace, ORDER, ordered=True)
    found = list_series(workspace)
    for series in found[:6]:
        labels.label_series(workspace, series, true_boundaries(workspace, series))
    return found, train_model(workspace, feature_set="efficientnet_lite0@imagenet")


def test_a_proposal_from_a_model_trained_since_the_last_predict_predicts_the_series_first(bananas_embedded):
    """Found trying the command line on a new collection: ``train`` then ``label-series
    --accept-proposal`` labeled a whole series with the first stage, because the new model had
    predicted none of its images."""
    from serieslabeler.loop import propose_series
    from serieslabeler.models import load_predictions

    with Workspace.open(bananas_embedded) as workspace:
        found, model = label_six_series_and_train(workspace)
        target = found[8]
        assert len(load_predictions(workspace, model.id, target.image_ids).image_ids) == 0
        proposal = propose_series(workspace, target)
        assert sorted(load_predictions(workspace, model.id, target.image_ids).image_ids.tolist()) == sorted(target.image_ids)
        assert len(proposal.boundaries) >= 2 and proposal.boundaries == propose_series(workspace, target).boundaries
        assert len(set(truth_of(workspace, target.image_ids))) >= 2


def test_model_proposal_accept_monotone_route_and_decoded_evaluation(bananas_embedded):
    from serieslabeler.loop import evaluate_model, propose_series
    from serieslabeler.models import predict

    with Workspace.open(bananas_embedded) as workspace:
        found, model = label_six_series_and_train(workspace)
        predict(workspace, model.id)
        target = found[8]
        proposal = propose_series(workspace, target)
        stage_rank = [ORDER.index(s) for s in proposal.stages]
        assert stage_rank == sorted(stage_rank) and len(proposal.confidence) == len(target)
        assert np.all((proposal.confidence > 0) & (proposal.confidence <= 1 + 1e-9))
        evaluation = evaluate_model(workspace)
        assert evaluation.decoded_report is not None and set(evaluation.decoded_report["macro"]) == set(evaluation.report["macro"])
    code, data = cli("label-series", "--workspace", bananas_embedded, "--series", target.key, "--accept-proposal")
    assert code == 0 and data["events"][0]["interactions"] == 1, data
    with Workspace.open(bananas_embedded) as workspace:
        assert labels.series_boundaries(workspace, target) == proposal.boundaries
        other = found[9]
        proposed = propose_series(workspace, other).boundaries
    # the proposal corrected: its last boundary removed costs 1 for the proposal and 1 for the removal
    assert len(proposed) >= 2, proposed
    corrected = ",".join(f"{stage}@{image}" for stage, image in proposed[:-1])
    code, data = cli("label-series", "--workspace", bananas_embedded, "--series", other.key, "--accept-proposal", "--boundaries", corrected)
    assert code == 0 and data["events"][0]["interactions"] == 2, data
    assert data["events"][0]["details"]["proposal"] == [list(b) for b in proposed]
    with Workspace.open(bananas_embedded) as workspace:
        assert labels.series_boundaries(workspace, other) == proposed[:-1]
    code, data = cli("label-series", "--workspace", bananas_embedded, "--series", other.key)
    assert code == 2 and "--accept-proposal, or both" in data["error"], data
    # a photo clicked out where the proposal starts a stage: the proposal is made without it
    last = found[10]
    with Workspace.open(bananas_embedded) as workspace:
        turn = propose_series(workspace, last).boundaries[1][1]
    code, data = cli("label-series", "--workspace", bananas_embedded, "--series", last.key, "--accept-proposal", "--exclude", turn)
    assert code == 0 and data["events"][0]["interactions"] == 2, data
    assert turn not in {image for _, image in data["events"][0]["details"]["boundaries"]}
    code, routed = cli("route", "--workspace", bananas_embedded, "--threshold", "0.9", "--monotone")
    assert code == 0 and routed["monotone"] is True and routed["pseudo_labeled"] + routed["to_cluster"] > 0, routed
    code, scores = cli("evaluate", "--workspace", bananas_embedded)
    assert code == 0 and "report" in scores and scores["decoded_report"]["macro"]["F"] >= 0


def two_fruits_per_subject(tmp_path):
    """Bananas re-read as body parts: each subject is two fruits photographed together, attribute
    ``part`` naming which; each part ripens at its own pace, like a head and a leg."""
    import csv

    from tests.conftest import BANANAS

    with open(BANANAS / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    fruits = sorted({r["fruit"] for r in rows})
    for r in rows:
        position = fruits.index(r["fruit"])
        r["pair"], r["part"] = f"p{position // 2}", "first" if position % 2 == 0 else "second"
    table = tmp_path / "pairs.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, data = cli("ingest", "--workspace", tmp_path / "ws", "--images", BANANAS / "images", "--metadata", table,
                     "--subject", "pair", "--date", "date", "--time", "time", "--label", "ripeness", "--attributes", "part")
    assert code == 0, data
    return tmp_path / "ws"


def test_a_saved_split_decodes_each_parts_series_on_its_own(tmp_path):
    """Decoding a subject's interleaved photos of two parts as one monotone sequence forces the
    parts into one pace: wrong wherever one part is ahead of the other. With the model's
    evidence made the truth itself, decoding by part is exact, and by subject is not."""
    from serieslabeler.embed import embed_workspace
    from serieslabeler.loop import routing_labels
    from serieslabeler.models import Predictions, store_predictions, train_model
    from serieslabeler.store import saved_split, series_groups

    root = two_fruits_per_subject(tmp_path)
    code, data = cli("series", "--workspace", root, "--split-by", "part", "--remember")
    assert code == 0 and data["saved_split"] == "part" and len(data["series"]) == 11, data
    assert cli("series", "--workspace", root)[1]["split_by"] == "part", "the saved split is the default listing"
    code, data = cli("series", "--workspace", root, "--split-by", "colour", "--remember")
    assert code == 2 and "no attribute 'colour'" in data["error"]
    with Workspace.open(root) as workspace:
        embed_workspace(workspace, "colour")
        labels.add_labels(workspace, ORDER, ordered=True)
        parts = list_series(workspace, "part")
        for series in parts[:4]:
            labels.label_series(workspace, series, true_boundaries(workspace, series))
        model = train_model(workspace, feature_set="colour")
        ids = np.array(sorted(i for s in parts for i in s.image_ids))
        truth = np.array(truth_of(workspace, ids))
        classes = np.array(sorted(ORDER))
        store_predictions(workspace, Predictions(model.id, ids, classes, (truth[:, None] == classes[None, :]).astype(float)))
        assert set(series_groups(workspace, ids)) == {s.key for s in parts} and saved_split(workspace) == "part"
        by_part = routing_labels(workspace, model.id, ids, monotone=True)
    assert cli("series", "--workspace", root, "--split-by", "none", "--remember")[1]["saved_split"] is None
    with Workspace.open(root) as workspace:
        assert set(series_groups(workspace, ids)) == {parse_series_key(s.key)[0] for s in parts}
        by_subject = routing_labels(workspace, model.id, ids, monotone=True)
    assert by_part.labels.astype(str).tolist() == truth.tolist()
    assert (by_subject.labels.astype(str) != truth).sum() > 0, "some subject's parts are at different stages at one time"


def test_an_ordered_vocabulary_takes_no_new_name_by_labeling_until_it_is_added(ws):
    """A mistyped stage ('Q' for 'O') would become a class of its own and break the order."""
    labels.add_labels(ws, ORDER, ordered=True)
    before = ws.db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0]
    code, data = cli("label-images", "--workspace", ws.root, "--images", "1,2", "--as", "Q")
    assert code == 2 and "'Q' is not in the vocabulary, whose stages are ordered (U < R < V < O)" in data["error"]
    assert ws.db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0] == before and "Q" not in labels.vocabulary(ws)
    assert cli("vocab", "--workspace", ws.root, "--add", "stake")[0] == 0
    code, data = cli("label-images", "--workspace", ws.root, "--images", "1", "--as", "stake")
    assert code == 0 and labels.vocabulary_order(ws) == list(ORDER), "a label outside the order, added on purpose"


def test_routing_again_with_the_same_model_decodes_each_series_as_the_first_routing_did(bananas_embedded):
    """The second routing reads the pending pseudo-labels along with the unlabeled images; decoding
    only what the first one left made its posteriors rise and routed more each time."""
    from serieslabeler.models import predict

    with Workspace.open(bananas_embedded) as workspace:
        _, model = label_six_series_and_train(workspace)
        predict(workspace, model.id)
    route = ("route", "--workspace", bananas_embedded, "--threshold", "0.8", "--monotone", "--no-support")
    code, first = cli(*route)
    assert code == 0 and first["pseudo_labeled"] > 0 and first["to_cluster"] > 0, first
    code, again = cli(*route)
    assert code == 0 and again["pseudo_labeled"] == 0 and again["routed_sample"] == first["routed_sample"], (first, again)


def test_a_series_label_is_refused_when_an_earlier_photo_keeps_a_later_stage(ws):
    labels.add_labels(ws, ORDER, ordered=True)
    series = list_series(ws)[0]
    first, second, start = series.image_ids[0], series.image_ids[1], series.image_ids[4]
    labels.label_images(ws, [first], "O")
    labels.label_images(ws, [second], "U")
    code, data = cli("label-series", "--workspace", ws.root, "--series", series.key, "--boundaries", f"V@{start}")
    assert code == 2 and f"image {first} of series '{series.key}' is labeled O (manual) before V starts at image {start}" in data["error"]
    assert labels.current_labels(ws)["image_id"].tolist() == sorted([first, second]), "nothing written"
    code, data = cli("label-series", "--workspace", ws.root, "--series", series.key, "--boundaries", f"V@{start}", "--exclude", first)
    assert code == 0, "clicked out, the photo no longer contradicts the series (an earlier stage before it never does)"
