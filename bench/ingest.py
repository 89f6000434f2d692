"""Ingest speed against the machine's limit, and upload rows' linearity (by
hand or `make bench`). Prints figures with their baselines and ratios; asserts
nothing.

1. The limit: the fastest Pillow-only pipeline for the same work on one core
   (full decode, sha256, pHash, one WEBP thumbnail from the decoded image,
   checked to give our exact hash and thumbnail) on 1 MP JPEGs; then
   albums.ingest.inspect_image (every check) on one core and on 2 worker
   processes, and image_ingest (files and rows too) on one, as fractions of
   it; and the limit with libjpeg's 1/2-scale draft decode, with the pHash
   drift that decode would bring.
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


def limit_pipeline(data: bytes) -> tuple[str, int, bytes]:
    """The least Pillow-only work that does our job: one full decode (a
    truncated file raises), sha256 of the bytes, one WEBP thumbnail and the
    pHash of that thumbnail, made exactly as ours are (bench_ingest checks
    that both give the same hash and thumbnail)."""
    import imagehash
    from PIL import Image

    digest = hashlib.sha256(data).hexdigest()
    im = Image.open(io.BytesIO(data))
    im.load()
    im.thumbnail((256, 256), Image.Resampling.BICUBIC, reducing_gap=1.5)
    buf = io.BytesIO()
    im.save(buf, "WEBP", quality=82, method=0)
    value = int(str(imagehash.phash(im)), 16)
    return digest, value - (1 << 64) if value >= (1 << 63) else value, buf.getvalue()


def draft_pipeline(data: bytes) -> int:
    """The limit with libjpeg decoding at 1/2 scale (draft): every block is
    still entropy-decoded, but the thumbnail, hence the pHash, differs."""
    import imagehash
    from PIL import Image

    hashlib.sha256(data).hexdigest()
    im = Image.open(io.BytesIO(data))
    im.draft(None, (384, 384))
    im.load()
    im.thumbnail((256, 256), Image.Resampling.BICUBIC, reducing_gap=1.5)
    im.save(io.BytesIO(), "WEBP", quality=82, method=0)
    value = int(str(imagehash.phash(im)), 16)
    return value - (1 << 64) if value >= (1 << 63) else value


def ours(data: bytes) -> object:
    from albums.ingest import inspect_image

    return inspect_image(data, "photo.jpg")


def stored(data: bytes) -> object:
    """Ours end to end: inspect, both files written, the row, the album link."""
    from albums.models import Album
    from albums.services import image_ingest

    album = Album.objects.get(slug="ingest-bench")
    return image_ingest(
        data=data, filename="photo.jpg", source_kind="upload", album=album
    )


_WORK = {
    "limit": limit_pipeline,
    "draft": draft_pipeline,
    "ours": ours,
    "stored": stored,
}


def _run_slice(args: tuple[str, int, int]) -> int:
    name, start, stop = args
    work = _WORK[name]
    for i in range(start, stop):
        work(_IMAGES[i])
    return stop - start


def rate(name: str, processes: int) -> tuple[float, float]:
    """Images per second of wall time, and (one process) per CPU second: the
    CPU figure holds up better when other work shares the machine."""
    n = len(_IMAGES)
    started, cpu = time.perf_counter(), time.process_time()
    if processes == 1:
        _run_slice((name, 0, n))
    else:
        step = -(-n // processes)
        slices = [(name, a, min(a + step, n)) for a in range(0, n, step)]
        # Forked: the workers share the images and Django's settings.
        with get_context("fork").Pool(processes) as pool:
            pool.map(_run_slice, slices)
    wall = n / (time.perf_counter() - started)
    return wall, n / (time.process_time() - cpu) if processes == 1 else 0.0


def _same_work() -> tuple[bool, int]:
    """Whether the limit's pHash and thumbnail equal ours on every image, and
    the largest pHash distance the draft decode would introduce."""
    from albums.ingest import hamming

    same, drift = True, 0
    for data in _IMAGES:
        mine = ours(data)
        digest, phash, thumb = limit_pipeline(data)
        same &= (digest, phash, thumb) == (
            mine.sha256,
            mine.phash,
            mine.thumbnails[256],
        )
        drift = max(drift, hamming(phash, draft_pipeline(data)))
    return same, drift


def bench_ingest(count: int) -> None:
    from albums.services import album_create

    album_create(name="Ingest bench", slug="ingest-bench")
    _IMAGES.extend(photo_like_jpeg(seed) for seed in range(count))
    same, drift = _same_work()  # also warms imports and caches
    limit, limit_cpu = rate("limit", 1)
    draft, draft_cpu = rate("draft", 1)
    one, one_cpu = rate("ours", 1)
    two, _ = rate("ours", 2)
    end_to_end, end_cpu = rate("stored", 1)
    print(f"ingest, {count} 1 MP JPEGs (wall images/s, per CPU second, ratio):")
    print(f"  limit (Pillow only, 1 core)   {limit:7.1f}/s  {limit_cpu:7.1f}/cpu-s")
    print(
        f"  ours, 1 process               {one:7.1f}/s  {one_cpu:7.1f}/cpu-s"
        f"  {one / limit:.0%} (cpu {one_cpu / limit_cpu:.0%}) of the limit"
    )
    print(f"  ours, 2 processes             {two:7.1f}/s  {two / limit:.2f}x the limit")
    print(
        f"  ours + storage and rows, 1 p. {end_to_end:7.1f}/s  {end_cpu:7.1f}/cpu-s"
        f"  {end_to_end / limit:.0%} of the limit"
    )
    print(
        f"  limit with JPEG draft (1/2)   {draft:7.1f}/s  {draft_cpu:7.1f}/cpu-s"
        f"  {draft / limit:.2f}x; pHash moves up to {drift} bits"
    )
    verdict = "same sha256, pHash and thumbnail" if same else "NO: outputs differ"
    print(f"  limit does our work: {verdict}")


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
