"""The clustering matrix: metadata encoding and the variance-share weighting."""
from __future__ import annotations

import numpy as np
import pytest

from serieslabeler.errors import PipelineError
from serieslabeler.space import MetadataAppender, build_matrix, metadata_frame
from serieslabeler.store import Workspace

LITE0 = "efficientnet_lite0@imagenet"


@pytest.fixture(scope="module")
def workspace(bananas_embedded_template):
    with Workspace.open(bananas_embedded_template) as opened:
        yield opened


def variance_shares(matrix) -> dict[str, float]:
    X = matrix.X.astype(np.float64)
    total = X.var(axis=0).sum()
    return {name: X[:, columns].var(axis=0).sum() / total for name, columns in matrix.blocks.items()}


@pytest.mark.parametrize(
    "weights",
    [{}, {"days": 0.3}, {"days": 0.2, "group": 0.1, "hour": 0.05}, {"group": 0.5, "date": 0.4}, {"day": 0.01}],
)
def test_weight_is_the_fields_share_of_total_variance(workspace, weights):
    matrix = build_matrix(workspace, "efficientnet_lite0", metadata=weights)
    shares = variance_shares(matrix)
    assert set(shares) == {"features", *weights}
    for name, weight in weights.items():
        assert shares[name] == pytest.approx(weight, abs=1e-4)
    assert shares["features"] == pytest.approx(1 - sum(weights.values()), abs=1e-4)
    assert matrix.X.dtype == np.float32 and matrix.X.shape[0] == 220 and matrix.feature_set == LITE0


def test_weight_zero_is_off_and_blocks_have_their_widths(workspace):
    matrix = build_matrix(workspace, LITE0, metadata={"days": 0.0, "group": 0.2, "hour": 0.1})
    assert matrix.blocks == {"features": slice(0, 1280), "group": slice(1280, 1282), "hour": slice(1282, 1283)}
    assert matrix.metadata == {"group": 0.2, "hour": 0.1}


def test_numeric_is_z_scored_and_categorical_one_hot(workspace):
    matrix = build_matrix(workspace, LITE0, metadata={"hour": 0.25, "group": 0.25})
    frame = metadata_frame(workspace, matrix.ids, ["hour", "group"])
    hours = frame["hour"].to_numpy()
    z = (hours - hours.mean()) / hours.std()
    np.testing.assert_allclose(matrix.X[:, matrix.blocks["hour"]][:, 0], z * 0.5, atol=1e-5)
    group = matrix.X[:, matrix.blocks["group"]]
    fridge = frame["group"].to_numpy() == "F"
    # one column per value (B, F); rows with the same value are identical
    assert group.shape[1] == 2 and len(np.unique(group[fridge], axis=0)) == 1 and len(np.unique(group[~fridge], axis=0)) == 1
    assert group[fridge][0, 1] > group[~fridge][0, 1]


def test_derived_days_count_from_the_subject_and_date_from_the_collection(bananas_workspace):
    with Workspace.open(bananas_workspace) as workspace:
        # every fruit starts on 2020-05-28; fruit 12 now starts two days later
        with workspace.transaction() as db:
            db.execute(
                "UPDATE images SET taken_at = strftime('%Y-%m-%dT%H:%M:%S', taken_at, '+2 days') "
                "WHERE subject_id = (SELECT id FROM subjects WHERE name = '12')"
            )
        rows = workspace.db.execute(
            "SELECT i.id, s.name FROM images i JOIN subjects s ON s.id = i.subject_id ORDER BY i.taken_at"
        ).fetchall()
        ids = np.array([row[0] for row in rows])
        subjects = np.array([row[1] for row in rows])
        frame = metadata_frame(workspace, ids, ["days", "date"])
        absolute = metadata_frame(workspace, ids, ["days"], absolute_dates=True)
    first_of_subject = np.array([subjects[:i].tolist().count(s) == 0 for i, s in enumerate(subjects)])
    assert (frame["days"].to_numpy()[first_of_subject] == 0).all()
    assert frame["date"].iloc[0] == 0 and (frame["days"] >= 0).all()
    # the first photo of fruit 11 is 2020-05-28 18:20, its second 2020-05-29 20:10
    assert frame.loc[2, "days"] == pytest.approx(1 + 110 / 1440)
    shift = (frame["date"] - frame["days"]).to_numpy()
    np.testing.assert_allclose(shift[subjects == "12"], 2.0, atol=0.1)
    np.testing.assert_allclose(shift[subjects == "11"], 0.0, atol=0.1)
    np.testing.assert_allclose(absolute["days"], frame["date"])


def test_missing_numeric_becomes_the_mean_and_unseen_category_zero():
    X = np.random.default_rng(0).normal(size=(6, 4))
    metadata = {"size": [1.0, 2.0, None, 3.0, np.nan, 2.0], "kind": ["a", "b", "a", None, "b", "a"]}
    appender = MetadataAppender({"size": 0.3, "kind": 0.2}, {"size": "numeric", "kind": "categorical"})
    out = appender.fit_transform(X, metadata)
    size = out[:, appender.blocks_["size"]][:, 0]
    assert size[2] == pytest.approx(0.0, abs=1e-6) and size[4] == pytest.approx(0.0, abs=1e-6)
    assert size[0] < size[1] < size[3]
    # a new row: an unseen category is encoded like a missing one; the fitted scaling is reused
    new = appender.transform(X[:2], {"size": [2.0, 2.0], "kind": ["zzz", None]})
    np.testing.assert_allclose(new[0, 4:], new[1, 4:])
    np.testing.assert_allclose(appender.transform(X[:3], {k: v[:3] for k, v in metadata.items()}), out[:3], atol=1e-6)


@pytest.mark.parametrize(
    "weights, message",
    [
        ({"dya": 0.1}, "unknown metadata field 'dya'; available fields: days, date, day, group, hour"),
        ({"days": 1.0}, "must be at least 0 and below 1"),
        ({"days": -0.1}, "must be at least 0 and below 1"),
        ({"days": 0.6, "group": 0.5}, "sum to 1.1"),
    ],
)
def test_bad_weights_are_refused_with_the_reason(workspace, weights, message):
    with pytest.raises(PipelineError, match=message):
        build_matrix(workspace, LITE0, metadata=weights)


def test_subset_in_the_order_given_and_unknown_feature_set(workspace):
    matrix = build_matrix(workspace, LITE0, image_ids=[7, 3, 5], metadata={"days": 0.5})
    assert matrix.ids.tolist() == [7, 3, 5]
    with pytest.raises(PipelineError, match="no feature set 'resnet50'"):
        build_matrix(workspace, "resnet50")
