"""Embedding throughput: end to end (decode + resize + forward + store) versus the raw forward pass.

The bananas images are repeated to ``--images`` catalog entries (each copy a hard link under
its own content key, so every one is decoded and embedded like a distinct photo). Prints:

- raw forward images/s: the backbone on random tensors of the same batch size (after one
  warm-up batch), the ceiling for embedding;
- end-to-end images/s of ``embed_workspace`` and the ratio end-to-end / raw (target >= 0.8:
  decoding in the DataLoader workers keeps up with the network);
- cache: a second run's computed count and time; then 1% new images added, and that run's
  time as a share of the full run's (target <= 2%).

Usage::

    .venv/bin/python bench/embed.py [--images 1000] [--backbone efficientnet_lite0] [--weights default]
        [--device cpu|cuda] [--batch-size 32] [--workers N] [--dtype float32]

On a GPU: ``--device cuda --backbone resnet50 --weights random --batch-size 256``
(random weights cost the same time as ImageNet ones; bf16 autocast is automatic on CUDA).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import tempfile
import time
from pathlib import Path

from serieslabeler.demo import SAMPLE_MAPPING
from serieslabeler.embed import (
    default_workers,
    embed_workspace,
    load_backbone,
    resolve_device,
)
from serieslabeler.ingest import ingest
from serieslabeler.store import Workspace

ROOT = Path(__file__).resolve().parent.parent

BANANAS = ROOT / "tests" / "data" / "bananas"
MAPPING = SAMPLE_MAPPING  # the bundled sample's columns: the full collection has the same


def repeat_images(workspace: Workspace, total: int) -> int:
    """Add catalog copies of the workspace's first images (hard-linked files under new keys)
    until it holds ``total`` images; returns how many were added."""
    originals = workspace.db.execute(
        "SELECT id, sha256, file_name, ext, width, height, subject_id, taken_at FROM images ORDER BY id"
    ).fetchall()
    have = workspace.image_count()
    with workspace.transaction() as db:
        for n in range(have, total):
            row = originals[n % len(originals)]
            key = hashlib.sha256(f"{row['sha256']}-{n}".encode()).hexdigest()
            target = workspace.stored_image_path(key, row["ext"])
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(workspace.stored_image_path(row["sha256"], row["ext"]), target)
            db.execute(
                "INSERT INTO images(sha256, file_name, ext, width, height, subject_id, taken_at) VALUES (?,?,?,?,?,?,?)",
                (key, f"copy{n}_{row['file_name']}", row["ext"], row["width"], row["height"], row["subject_id"], row["taken_at"]),
            )
    return max(0, total - have)


def raw_forward_rate(backbone: str, weights: str, device: str, batch_size: int, images: int) -> float:
    """Images/s of the network alone on random input, batched and set up as embedding does."""
    import torch

    model = load_backbone(backbone, weights)
    module = model.module.to(device)
    crop = model.spec.preprocess.crop
    x = torch.randn(batch_size, 3, crop, crop, device=device)
    cuda = device == "cuda"
    if cuda:
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    batches = math.ceil(images / batch_size)
    with torch.inference_mode(), autocast:
        module(x)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(batches):
            module(x).float().cpu()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return batches * batch_size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    device = resolve_device(args.device)
    workers = default_workers(device) if args.workers is None else args.workers
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""))
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as folder, Workspace.create(Path(folder) / "ws") as workspace:
        ingest(workspace, BANANAS / "images", BANANAS / "metadata.csv", MAPPING)
        repeat_images(workspace, args.images)
        print(f"{workspace.image_count()} images ({args.backbone}@{args.weights}, batch {args.batch_size}, {workers} workers)")

        raw = raw_forward_rate(args.backbone, args.weights, device, args.batch_size, args.images)
        print(f"raw forward:  {raw:8.1f} images/s (random tensors, batch {args.batch_size})")

        options = dict(weights=args.weights, device=device, batch_size=args.batch_size, num_workers=workers, dtype=args.dtype)
        full = embed_workspace(workspace, args.backbone, **options)
        print(f"end to end:   {full.images_per_second:8.1f} images/s ({full.computed} images in {full.seconds:.1f} s, "
              f"model loading and worker start included)")
        print(f"ratio end-to-end / raw forward: {full.images_per_second / raw:.2f} (target >= 0.8)")

        again = embed_workspace(workspace, args.backbone, **options)
        print(f"second run: {again.computed} computed, {again.cached} cached, {again.seconds:.2f} s "
              f"({100 * again.seconds / full.seconds:.1f}% of the full run)")

        added = repeat_images(workspace, args.images + max(1, args.images // 100))
        more = embed_workspace(workspace, args.backbone, **options)
        print(f"1% new images: {added} added, {more.computed} computed, {more.cached} cached, {more.seconds:.2f} s "
              f"({100 * more.seconds / full.seconds:.1f}% of the full run; target <= 2%)")


if __name__ == "__main__":
    main()
