"""The oracle's series costs, the ``series`` scenario, NaN-free JSON, and ``simulate --order``."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import cli

from serieslabeler.errors import PipelineError
from serieslabeler.loop import Oracle
from serieslabeler.simulation import (
    Collection,
    SimulationConfig,
    SimulationResult,
    proposal_ceiling,
    run_scenario,
)
from serieslabeler.simulation.records import CurvePoint, ScenarioRun

ORDER = ("U", "R", "V", "O")


def strict_json(data) -> dict:
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(json.dumps(data, allow_nan=False), parse_constant=refuse)


def test_oracle_costs_for_boundaries_placed_accepted_and_corrected():
    oracle = Oracle(range(1, 9), ["U", "U", "R", "R", "V", "O", "O", "stake"])
    placed = oracle.answer_series(range(1, 9), ORDER)
    assert placed.boundaries == [("U", 1), ("R", 3), ("V", 5), ("O", 6)]
    assert placed.excluded.tolist() == [8] and placed.stages.tolist() == ["U", "U", "R", "R", "V", "O", "O"]
    assert placed.interactions == 4 + 1
    assert oracle.answer_series(range(1, 9), ORDER, proposal=placed.boundaries).interactions == 1 + 1
    moved = [("U", 1), ("R", 4), ("V", 5), ("O", 6)]
    assert oracle.answer_series(range(1, 9), ORDER, proposal=moved).interactions == 1 + 1 + 1
    missing = [("U", 1), ("R", 3), ("V", 5)]
    assert oracle.answer_series(range(1, 9), ORDER, proposal=missing).interactions == 1 + 1 + 1
    wrong = oracle.answer_series(range(1, 9), ORDER, proposal=[("U", 2), ("R", 4), ("V", 6), ("O", 7)])
    assert wrong.proposal_changes == 4 and wrong.interactions == 4 + 1  # placing by hand is cheaper than 1 + 4
    assert wrong.proposal_offsets == [1, 1, 1, 1]
    assert placed.proposal_changes is None and placed.proposal_offsets is None
    # R three photos late, V missed, a stage outside the truth's invented: each boundary's distance
    late = oracle.answer_series(range(1, 9), ORDER, proposal=[("U", 1), ("R", 6), ("O", 7)])
    assert late.proposal_offsets == [0, 3, None, 1] and late.proposal_changes == 3
    with pytest.raises(PipelineError, match="may not see"):
        oracle.answer_series([1, 99], ORDER)


def test_a_tolerant_oracle_leaves_a_boundary_a_photo_off_and_its_labels_show_the_error():
    truth = ["U", "U", "U", "R", "R", "R", "V", "V", "O", "stake"]
    exact, tolerant = Oracle(range(1, 11), truth), Oracle(range(1, 11), truth, boundary_tolerance=1)
    late = [("U", 1), ("R", 5), ("V", 8), ("O", 9)]  # R and V each one photo late
    left = tolerant.answer_series(range(1, 11), ORDER, proposal=late)
    assert left.interactions == 1 + 1  # accepted as it is, the stake clicked out
    assert left.boundaries == late and left.stages.tolist() == ["U", "U", "U", "U", "R", "R", "R", "V", "O"]
    assert left.proposal_changes == 2 and left.proposal_offsets == [0, 1, 1, 0]  # the proposal was still 2 boundaries off
    moved = exact.answer_series(range(1, 11), ORDER, proposal=late)
    assert moved.interactions == 1 + 2 + 1 and moved.stages.tolist() == truth[:9]
    farther = tolerant.answer_series(range(1, 11), ORDER, proposal=[("U", 1), ("R", 6), ("V", 7), ("O", 9)])
    assert farther.interactions == 1 + 1 + 1 and farther.stages.tolist() == truth[:9]  # two photos off: moved
    # leaving R a photo late would put it on V's true start, which the proposal missed: every boundary is placed
    crowded = Oracle(range(1, 7), ["U", "U", "R", "V", "O", "O"], boundary_tolerance=1)
    placed = crowded.answer_series(range(1, 7), ORDER, proposal=[("U", 1), ("R", 4), ("O", 5)])
    assert placed.boundaries == [("U", 1), ("R", 3), ("V", 4), ("O", 5)] and placed.interactions == 1 + 2
    with pytest.raises(PipelineError, match="0 or more photos"):
        Oracle(range(1, 3), ["U", "R"], boundary_tolerance=-1)


def ripening_collection(noise: float) -> Collection:
    """12 subjects x 12 photos whose stage only moves forward; features: the stage plus noise."""
    rng = np.random.default_rng(0)
    subjects, stages, days = [], [], []
    for subject in range(12):
        cuts = np.sort(rng.choice(np.arange(1, 12), size=3, replace=False))
        for day in range(12):
            subjects.append(subject)
            stages.append(int(np.searchsorted(cuts, day, side="right")))
            days.append(float(day))
    stages = np.array(stages)
    X = np.eye(4)[stages] * 2.0 + rng.normal(scale=noise, size=(len(stages), 4))
    return Collection("ripening", X, np.array(ORDER)[stages], np.array(subjects), np.array(days), order=ORDER)


@pytest.fixture(scope="module")
def ripening() -> Collection:
    return ripening_collection(noise=1.0)


def test_series_scenario_labels_whole_series_exactly_and_never_sees_test_images(ripening):
    run = run_scenario(ripening, "series", seed=0, config=SimulationConfig(budget=1.0))
    last = run.curve[-1]
    assert last.labeled == run.pool_size and last.label_errors == 0
    assert run.images_per_interaction > 2.5  # at most 4 boundaries per 12 photos, fewer when proposals are right
    assert not run.oracle_asked & set(run.test_ids.tolist())
    assert all(p.decoded_macro_f1 is not None for p in run.curve)
    assert run.summary()["interactions_to_95_decoded"] is not None
    assert run.summary()["proposals"] == len(np.unique(ripening.subjects)) - len(np.unique(ripening.subjects[run.test_ids])) - 1
    assert run.corrections_per_proposal == np.mean(run.proposal_corrections)
    offsets = run.summary()["proposal_boundary_offsets"]
    assert list(offsets) == ["exact", "1", "2", "3+", "missed or invented"] and sum(offsets.values()) == len(run.proposal_offsets)
    # a proposal's corrections are its boundaries off by a photo or more, missed or invented
    assert sum(offsets.values()) - offsets["exact"] == sum(run.proposal_corrections)
    assert run.images_per_interaction_exact_proposals >= run.images_per_interaction
    full = run_scenario(ripening, "full", seed=0, config=SimulationConfig(budget=0.3))
    assert full.curve[0].labeled >= 12  # the first structure-aware subjects are labeled by boundaries
    with pytest.raises(PipelineError, match="needs ordered stages"):
        run_scenario(replace(ripening, order=None), "series", seed=0)


def test_full_with_ordered_stages_labels_series_and_reviews_only_series_confident_throughout():
    clearer = ripening_collection(noise=0.8)
    run = run_scenario(clearer, "full", seed=0, config=SimulationConfig(budget=1.0))
    last = run.curve[-1]
    assert last.labeled == run.pool_size and last.label_errors == 0
    assert last.cluster_labeled == 0  # nothing is clustered: clusters cut across the stages
    assert last.pseudo_accepted > 0 and last.pseudo_accepted % 12 == 0  # whole series of 12 photos went to review
    assert run.pseudo_routed == last.pseudo_accepted
    assert run.images_per_interaction > 5


def test_a_run_without_scores_writes_null_not_nan(ripening):
    empty = ScenarioRun("random", 0, 10, 5, float("nan"), [CurvePoint(0, 0, float("nan"), float("nan"), 0, 0, 0)], np.array([1]), set())
    result = SimulationResult("empty", SimulationConfig(), [empty])
    data = strict_json(result.to_json())
    assert data["table"][0]["final_macro_f1"] is None and data["runs"][0]["supervised_f1"] is None
    assert "-" in result.format()


def test_cli_simulate_with_an_order_and_series_scenario(bananas_embedded, tmp_path):
    out = tmp_path / "curves.json"
    code, data = cli(
        "simulate", "--workspace", bananas_embedded, "--features", "efficientnet_lite0", "--scenarios", "series,uncertain+cluster",
        "--order", "U,R,V,O", "--uncertain-batch", "20", "--seeds", "0", "--budget", "0.15", "--out", out, "--ceiling",
    )
    assert code == 0, data
    ceiling = strict_json(data["proposal_ceiling"])
    assert len(ceiling["corrections"]) == 11 and ceiling["corrections_per_series"] == np.mean(list(ceiling["corrections"].values()))
    assert 1 < ceiling["images_per_interaction"] <= 20  # 20 photos a fruit, at least 1 interaction each
    assert sum(ceiling["proposal_boundary_offsets"].values()) >= 11 * 3
    assert data["order"] == list(ORDER) and [row["scenario"] for row in data["table"]] == ["series", "uncertain+cluster"]
    series = data["runs"][0]
    assert series["label_error_rate"] == 0.0 and series["images_per_interaction"] > 1
    assert strict_json(json.loads(out.read_text()))["table"][0]["scenario"] == "series"
    assert ceiling["label_precision"] == 1.0
    code, tolerant = cli("simulate", "--workspace", bananas_embedded, "--features", "efficientnet_lite0", "--scenarios", "random",
                         "--order", "U,R,V,O", "--seeds", "0", "--budget", "0.05", "--ceiling", "--boundary-tolerance", "1")
    assert code == 0, tolerant
    assert tolerant["proposal_ceiling"]["images_per_interaction"] > ceiling["images_per_interaction"]
    assert tolerant["proposal_ceiling"]["label_precision"] < 1.0
    code, data = cli("simulate", "--workspace", bananas_embedded, "--features", "efficientnet_lite0", "--boundary-tolerance", "-1")
    assert code == 2 and "--boundary-tolerance must be 0 or more" in data["error"]
    code, data = cli("simulate", "--workspace", bananas_embedded, "--features", "efficientnet_lite0", "--scenarios", "series")
    assert code == 2 and "ordered stages" in data["error"]
    code, data = cli("simulate", "--workspace", bananas_embedded, "--features", "efficientnet_lite0", "--scenarios", "random", "--ceiling")
    assert code == 2 and "--ceiling needs ordered stages" in data["error"]


def test_the_proposal_ceiling_accepts_plain_stages_for_one_interaction_and_counts_corrections_where_they_blur():
    plain = proposal_ceiling(ripening_collection(noise=0.05))
    assert set(plain.corrections) == set(range(12)) and set(plain.corrections.values()) == {0}
    assert plain.offset_counts["exact"] == len(plain.offsets) > 12  # every subject's boundaries, each exact
    assert plain.interactions == 12 and plain.images_per_interaction == 12.0  # 12 photos accepted in 1 interaction

    blurred = proposal_ceiling(ripening_collection(noise=2.0))
    assert blurred.corrections_per_series > 0.5 and blurred.offset_counts["exact"] < len(blurred.offsets)
    # each series costs 1 + its corrections, or its 4 boundaries by hand when that is cheaper
    assert blurred.interactions == sum(min(4, 1 + c) for c in blurred.corrections.values())
    assert blurred.images == 144


def test_a_tolerant_oracle_spends_label_precision_on_fewer_interactions():
    blurred = ripening_collection(noise=2.0)
    exact = proposal_ceiling(blurred)
    tolerant = proposal_ceiling(blurred, SimulationConfig(boundary_tolerance=1))
    assert tolerant.offsets == exact.offsets and tolerant.corrections == exact.corrections
    assert tolerant.interactions < exact.interactions and tolerant.images == exact.images
    assert exact.errors == 0 and exact.label_precision == 1.0
    one_off = sum(1 for offset in exact.offsets if offset == 1)  # each boundary left a photo off mislabels one image
    assert 0 < tolerant.errors <= one_off and tolerant.label_precision == 1 - tolerant.errors / tolerant.images
    run = run_scenario(blurred, "series", seed=0, config=SimulationConfig(budget=1.0, boundary_tolerance=1))
    assert run.label_error_rate > 0 and run.curve[-1].labeled == run.pool_size
    assert run_scenario(blurred, "series", seed=0, config=SimulationConfig(budget=1.0)).label_error_rate == 0


def test_the_proposal_ceiling_never_trains_on_the_subject_it_proposes():
    # every subject's photos look alike apart from their own stage code, which only that subject uses:
    # a model that saw the subject would place its boundaries exactly, the others' cannot
    collection = ripening_collection(noise=0.05)
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(12, 4, 4)) * 3.0
    stages = np.array([ORDER.index(label) for label in collection.truth])
    collection.X = np.hstack([np.zeros_like(collection.X), codes[collection.subjects, stages]]).astype(np.float32)
    assert proposal_ceiling(collection).corrections_per_series > 1


def test_a_series_with_every_photo_clicked_out_costs_its_clicks_with_or_without_a_proposal():
    oracle = Oracle([1, 2], ["stake", "blur"], boundary_tolerance=1)
    answer = oracle.answer_series([1, 2], ORDER, proposal=[("U", 1)])
    assert answer.boundaries == [] and answer.excluded.tolist() == [1, 2] and answer.interactions == 2
