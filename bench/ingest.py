"""Ingest speed against the machine's limit, and upload rows' linearity (by
hand or `make bench`). Prints figures with their baselines and ratios; asserts
nothing.

1. The limit: the fastest Pillow-only pipeline for the same work on one core
   (full decode, sha256, pHash, one WEBP thumbnail from the decoded image) on
   1 MP JPEGs; then albums.ingest.inspect_image (every check) on one core and
   on 2 worker processes, as a fraction of it.
2. Rows: the time per 1,000 files to record an upload run's per-file results
   as UploadFile rows (albums.runs._record, batches of ROW_BATCH) at 1k, 5k and
   20k files, against the old JSON document rewritten after every file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import photo_like_jpeg, setup_django  # noqa: E402

_IMAGES: list[bytes] = []


def limit_pipeline(data: bytes) -> int:
    """The least work that does the same job: one decode, hash, pHash, thumb."""
    import imagehash
    from PIL import Image

    digest = hashlib.sha256(data).hexdigest()
    im = Image.open(io.BytesIO(data))
    im.load()  # full decode: a truncated file raises here
    im.thumbnail((256, 256), Image.Resampling.BICUBIC, reducing_gap=1.5)
    buf = io.BytesIO()
    im.save(buf, "WEBP", quality=82, method=0)
    return len(digest) + int(str(imagehash.phash(im)), 16) % 2


def ours(data: bytes) -> int:
    from albums.ingest import inspect_image

    return len(inspect_image(data, "photo.jpg").sha256)


def _run_slice(args: tuple[str, int, int]) -> int:
    name, start, stop = args
    work = limit_pipeline if name == "limit" else ours
    return sum(work(_IMAGES[i]) for i in range(start, stop))


def rate(name: str, processes: int) -> float:
    n = len(_IMAGES)
    started = time.perf_counter()
    if processes == 1:
        _run_slice((name, 0, n))
    else:
        step = -(-n // processes)
        slices = [(name, a, min(a + step, n)) for a in range(0, n, step)]
        # Forked: the workers share the images and Django's settings.
        with get_context("fork").Pool(processes) as pool:
            pool.map(_run_slice, slices)
    return n / (time.perf_counter() - started)


def bench_ingest(count: int) -> None:
    _IMAGES.extend(photo_like_jpeg(seed) for seed in range(count))
    _run_slice(("limit", 0, 2))  # warm imports and caches
    _run_slice(("ours", 0, 2))
    limit = rate("limit", 1)
    one = rate("ours", 1)
    two = rate("ours", 2)
    print(f"ingest, {count} 1 MP JPEGs:")
    print(f"  limit (Pillow only, 1 core)   {limit:7.1f} images/s")
    print(f"  ours, 1 process               {one:7.1f} images/s  {one / limit:.0%}")
    print(f"  ours, 2 processes             {two:7.1f} images/s  {two / limit:.2f}x")


def bench_rows(sizes: list[int]) -> None:
    from albums import runs
    from albums.models import UploadFile, UploadRun
    from albums.services import album_create

    album = album_create(name="Rows bench")
    print("upload rows, time per 1,000 files (rows vs JSON rewritten per file):")
    for size in sizes:
        run = UploadRun.objects.create(
            album=album, status="running", progress_total=size
        )
        started = time.perf_counter()
        for a in range(0, size, runs.ROW_BATCH):
            batch = [
                (
                    UploadFile(
                        run=run, position=n, filename=f"{n}.jpg", status="rejected"
                    ),
                    0,
                )
                for n in range(a, min(a + runs.ROW_BATCH, size))
            ]
            runs._record(run, batch, "x")
        per_k = (time.perf_counter() - started) * 1000 / size
        line = f"  {size:6,} files: rows {per_k:7.3f} s/1k"
        if size <= 5000:
            per_k_json = _json_rewrite(album, size)
            line += f"   json {per_k_json:7.3f} s/1k  ({per_k_json / per_k:.1f}x)"
        print(line)


def _json_rewrite(album: object, size: int) -> float:
    from albums.models import UploadRun

    run = UploadRun.objects.create(album=album, status="running")
    results: list[dict] = []
    started = time.perf_counter()
    for n in range(size):
        results.append({"filename": f"{n}.jpg", "status": "rejected", "cpu_s": 0.0})
        UploadRun.objects.filter(pk=run.pk).update(results=results)
    return (time.perf_counter() - started) * 1000 / size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--rows", default="1000,5000,20000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagineer-bench-ingest-") as tmp:
        setup_django(Path(tmp))
        bench_ingest(args.images)
        bench_rows([int(s) for s in args.rows.split(",")])


if __name__ == "__main__":
    main()
