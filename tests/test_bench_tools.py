"""The benchmark tools reviewers run on collections of their own: the synthetic time-lapse
writer, and ``bench/threshold_honesty.py --workspace``'s refusals (run as scripts, as they are)."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, cli

SYNTHETIC = ROOT / "bench" / "synthetic_series.py"
HONESTY = ROOT / "bench" / "threshold_honesty.py"
STAGES = ("fresh", "early", "advanced", "dry")


def run_script(script: Path, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *map(str, argv)], capture_output=True, text=True, cwd=ROOT, timeout=300)


def write_synthetic(out: Path, seed: int = 0) -> list[dict]:
    done = run_script(SYNTHETIC, "--out", out, "--subjects", 4, "--days", 12, "--seed", seed)
    assert done.returncode == 0, done.stderr
    with open(out / "metadata.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_synthetic_series_move_one_way_through_the_stages_and_a_seed_writes_the_same_files(tmp_path):
    rows = write_synthetic(tmp_path / "a")
    assert {r["subject"] for r in rows} == {"s01", "s02", "s03", "s04"}
    assert all((tmp_path / "a" / "images" / r["file"]).is_file() for r in rows)
    for subject in {r["subject"] for r in rows}:
        series = sorted((r for r in rows if r["subject"] == subject), key=lambda r: r["date"])
        ranks = [STAGES.index(r["stage"]) for r in series]
        assert ranks == sorted(ranks), subject
    assert len({r["stage"] for r in rows}) >= 3
    again = write_synthetic(tmp_path / "b")
    assert again == rows
    first = rows[0]["file"]
    assert (tmp_path / "a" / "images" / first).read_bytes() == (tmp_path / "b" / "images" / first).read_bytes()
    assert write_synthetic(tmp_path / "c", seed=1) != rows


def test_the_threshold_bench_refuses_a_workspace_it_cannot_measure_with_exit_2(tmp_path):
    write_synthetic(tmp_path / "leaves")
    ingest = ["ingest", "--images", tmp_path / "leaves" / "images", "--metadata", tmp_path / "leaves" / "metadata.csv",
              "--subject", "subject", "--date", "date", "--attributes", "group"]
    no_truth = tmp_path / "no-truth"
    assert cli(*ingest[:1], "--workspace", no_truth, *ingest[1:])[0] == 0
    done = run_script(HONESTY, "--workspace", no_truth, "--features", "colour")
    assert done.returncode == 2 and "has no ground truth" in done.stderr, done.stderr

    labeled = tmp_path / "labeled"
    assert cli(*ingest[:1], "--workspace", labeled, *ingest[1:], "--label", "stage")[0] == 0
    assert cli("embed", "--workspace", labeled, "--backbone", "colour")[0] == 0
    done = run_script(HONESTY, "--workspace", labeled, "--features", "colour", "--subjects", 4)
    assert done.returncode == 2 and "--subjects must be between 1 and 3" in done.stderr, done.stderr
    code, data = cli("label-images", "--workspace", labeled, "--images", "1", "--as", "fresh")
    assert code == 0, data
    done = run_script(HONESTY, "--workspace", labeled, "--features", "colour")
    assert done.returncode == 2 and f"{labeled} already has 1 labels" in done.stderr, done.stderr


def test_the_chance_of_an_unbiased_promise_adds_the_promises_spread_to_the_routed_images_sampling():
    sys.path.insert(0, str(ROOT / "bench"))
    from threshold_honesty import chance_summary, unbiased_chance

    # the promise's standard error 3 points, 100 routed at 80% right (4 points): together 5, so within 5 is one sigma
    low, high = 0.8 - 1.96 * 0.03, 0.8 + 1.96 * 0.03
    assert abs(unbiased_chance(low, high, 0.8, 100) - 0.6827) < 1e-3
    assert unbiased_chance(0.8, 0.8, 1.0, 50) == 1.0  # no spread either side: an unbiased promise is exact
    assert unbiased_chance(None, None, 0.8, 100) is None and unbiased_chance(low, high, 0.8, 0) is None
    assert unbiased_chance(low, high, 0.8, 10_000) > unbiased_chance(low, high, 0.8, 100)
    assert chance_summary([(low, high, 0.8, 100)] * 2).endswith("within 5 pts in 1.4/2 seeds on average, in all 2 with chance 47%")
