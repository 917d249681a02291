"""Peak memory of an ingest that refuses a zip bomb: a 1.8 MB zip of four 450 MB entries.

    .venv/bin/python bench/zip_memory.py [--entries 4] [--entry-mb 450]

Prints the zip's size, the ingest's exit status and time, and the peak resident memory of the
ingest process (entries are checked from the zip directory and streamed, so memory stays
bounded whatever their declared size and however many threads decode).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

CHUNK = b"\0" * (1 << 20)


def write_bomb(path: Path, entries: int, entry_mb: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(entries):
            with archive.open(f"images/{i}.jpg", "w", force_zip64=True) as handle:
                for _ in range(entry_mb):
                    handle.write(CHUNK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=4)
    parser.add_argument("--entry-mb", type=int, default=450)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        bomb = tmp / "bomb.zip"
        write_bomb(bomb, args.entries, args.entry_mb)
        csv = tmp / "metadata.csv"
        csv.write_text("file,subject,date\n" + "".join(f"{i}.jpg,s{i},2020-01-{i + 1:02d}\n" for i in range(args.entries)))
        print(f"zip {bomb.stat().st_size / 1e6:.1f} MB: {args.entries} entries of {args.entry_mb} MB")
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "serieslabeler", "ingest", "--workspace", str(tmp / "ws"), "--images", str(bomb),
             "--metadata", str(csv), "--subject", "subject", "--date", "date", "--file", "file"],
            capture_output=True, text=True,
        )
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"ingest exit {done.returncode} in {time.perf_counter() - start:.1f} s; peak RSS of the ingest process {peak:.0f} MB")
        print("\n".join(done.stderr.strip().splitlines()[:3]))


if __name__ == "__main__":
    main()
