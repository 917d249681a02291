"""Write a synthetic time-lapse collection with ordered stages: a second collection, besides
bananas, to check that the benchmarks' figures are not bananas' alone.

Each subject is photographed once a day (a few days missed at random). Its hidden progress rises
linearly from an onset, at a rate set by its treatment group (``warm`` faster than ``cold``) times
its own factor, and its stage is the progress cut at 0.2, 0.45 and 0.7:
``fresh < early < advanced < dry`` (so stages last unequally, and a subject that starts late or
goes slowly may never reach the last one). The picture is a leaf-like ellipse on soil whose colour
moves from green through yellow and brown to grey, gains dark spots and shrinks as it progresses,
under lighting, position, size and angle that vary from photo to photo, with a tint of its own
per subject. Nothing in the pixels names the stage: images either side of a cut look alike, as
in real photo series.

Writes ``images/*.jpg`` and ``metadata.csv`` (``file``, ``subject``, ``date``, ``group``,
``stage``) into ``--out``; the same ``--seed`` writes the same files. Then, for example::

    .venv/bin/python bench/synthetic_series.py --out /tmp/leaves
    .venv/bin/serieslabeler ingest --workspace /tmp/leaves-ws --images /tmp/leaves/images \\
        --metadata /tmp/leaves/metadata.csv --subject subject --date date --label stage --attributes group
    .venv/bin/serieslabeler embed --workspace /tmp/leaves-ws --backbone efficientnet_lite0
    .venv/bin/serieslabeler simulate --workspace /tmp/leaves-ws --features efficientnet_lite0 \\
        --order fresh,early,advanced,dry --scenarios series,full,cluster-only --seeds 0,1,2,3,4
    .venv/bin/python bench/threshold_honesty.py --workspace /tmp/leaves-ws --metadata days=0.5
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

STAGES = ("fresh", "early", "advanced", "dry")
CUTS = (0.2, 0.45, 0.7)
PALETTE = np.array([(70, 150, 60), (170, 170, 70), (150, 105, 55), (95, 88, 80)], dtype=float)
RATES = {"warm": 1 / 14, "cold": 1 / 22}  # progress per day
SIZE = 160
START = dt.date(2024, 5, 1)


def stage_of(progress: float) -> str:
    return STAGES[int(np.searchsorted(CUTS, progress, side="right"))]


def colour_at(progress: float) -> np.ndarray:
    """The palette interpolated at ``progress`` in [0, 1]."""
    position = np.clip(progress, 0, 1) * (len(PALETTE) - 1)
    low = min(int(position), len(PALETTE) - 2)
    return PALETTE[low] + (position - low) * (PALETTE[low + 1] - PALETTE[low])


def draw(progress: float, tint: np.ndarray, axes: tuple[float, float], rng: np.random.Generator) -> Image.Image:
    """One photo of a subject at ``progress``: soil, the shrinking spotted ellipse, the day's light."""
    soil = np.array((120, 95, 70)) + rng.normal(0, 8, 3)
    pixels = np.clip(soil + rng.normal(0, 12, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    picture = Image.fromarray(pixels)
    leaf = Image.new("L", (SIZE, SIZE), 0)
    shrink = 1 - 0.3 * np.clip(progress, 0, 1)
    half_w, half_h = axes[0] * shrink * rng.uniform(0.92, 1.08), axes[1] * shrink * rng.uniform(0.92, 1.08)
    cx, cy = SIZE / 2 + rng.uniform(-14, 14), SIZE / 2 + rng.uniform(-14, 14)
    ImageDraw.Draw(leaf).ellipse((cx - half_w, cy - half_h, cx + half_w, cy + half_h), fill=255)
    leaf = leaf.rotate(rng.uniform(-20, 20), center=(cx, cy))
    colour = np.clip(colour_at(progress + rng.normal(0, 0.03)) + tint, 0, 255)
    body = Image.new("RGB", (SIZE, SIZE), tuple(int(c) for c in colour))
    spots = ImageDraw.Draw(body)
    for _ in range(rng.poisson(30 * np.clip(progress, 0, 1) ** 1.5)):
        x, y = cx + rng.uniform(-half_w, half_w), cy + rng.uniform(-half_h, half_h)
        radius = 1 + 4 * progress * rng.uniform(0.5, 1.5)
        spots.ellipse((x - radius, y - radius, x + radius, y + radius), fill=tuple(int(c * 0.55) for c in colour))
    picture.paste(body, mask=leaf)
    light = rng.normal(1.0, 0.08)
    return Image.fromarray(np.clip(np.asarray(picture, dtype=float) * light, 0, 255).astype(np.uint8))


def write_collection(out: Path, subjects: int, days: int, missing: float, seed: int) -> int:
    """Write the images and ``metadata.csv`` into ``out``; returns how many images."""
    rng = np.random.default_rng(seed)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(subjects):
        subject = f"s{index + 1:02d}"
        group = ("warm", "cold")[index % 2]
        rate = RATES[group] * rng.lognormal(0, 0.2)
        onset = rng.uniform(-3, 3)
        tint = rng.normal(0, 10, 3)
        axes = (rng.uniform(48, 62), rng.uniform(28, 38))
        for day in range(days):
            if day and rng.random() < missing:
                continue
            progress = max(0.0, (day - onset) * rate)
            name = f"{subject}_{day:02d}.jpg"
            draw(progress, tint, axes, rng).save(images / name, quality=85)
            rows.append({"file": name, "subject": subject, "date": (START + dt.timedelta(days=day)).isoformat(),
                         "group": group, "stage": stage_of(progress)})
    with open(out / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write images/ and metadata.csv into")
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--days", type=int, default=24)
    parser.add_argument("--missing", type=float, default=0.05, help="share of days without a photo (default 0.05)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    count = write_collection(args.out, args.subjects, args.days, args.missing, args.seed)
    print(f"wrote {count} images of {args.subjects} subjects to {args.out}")


if __name__ == "__main__":
    main()
