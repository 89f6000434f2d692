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
2. End to end: a folder of new 1 MP JPEGs (distinct pictures) imported through
   the real upload run path, its chunks run as the worker runs them on 1 and
   on 2 forked processes (files written and durable, rows, album links,
   results), against the limit of part 1; with syncfs and with an fsync per
   file and folder. On a tree without batched durability it runs as it is.
3. Rows: the time per 1,000 files to record an upload run's per-file results
   as UploadFile rows (albums.runs._record, batches of ROW_BATCH) at 1k, 5k and
   20k files, against the old JSON document rewritten after every file.
"""

from __future__ import annotations

import argparse
import contextlib
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


def distinct_photo_jpeg(seed: int) -> bytes:
    """bench.run's photo-like 1 MP JPEG with a coarse pattern of its own laid
    over it, so that images of different seeds are not near duplicates of each
    other (the plain ones share their gradients, hence their pHash, and an
    upload run would treat them as one picture)."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(photo_like_jpeg(seed))) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float32)
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.uniform(0, 255, (6, 6)).astype("uint8"), "L")
    field = np.asarray(coarse.resize(im.size, Image.Resampling.BICUBIC), np.float32)
    mixed = (pixels * 0.5 + field[..., None] * 0.5).clip(0, 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(mixed, "RGB").save(buf, "JPEG", quality=88)
    return buf.getvalue()


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


def bench_ingest(count: int) -> tuple[float, float]:
    from albums.services import album_create

    album_create(name="Ingest bench", slug="ingest-bench")
    _IMAGES.extend(distinct_photo_jpeg(seed) for seed in range(count))
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
    return limit, limit_cpu


def _upload_run(folder: Path, processes: int) -> tuple[float, float, str]:
    """Import `folder` through the real upload run path (folder import, chunk
    sub-tasks as the worker runs them, each on one of `processes` forked
    processes, like the general cluster's workers). Images per second of wall
    time and per CPU second (this process and its children), and the run's
    summary."""
    import resource

    from django.db import connection

    from albums import runs
    from albums.models import Album, UploadRun
    from albums.services import folder_import_create
    from imagineer_project.runs import run_chunks, run_claim

    album = Album.objects.get(slug="ingest-bench")
    run = folder_import_create(
        folder=folder, album=album, enqueue=False, near_duplicates="keep"
    )
    run = run_claim(UploadRun, run.pk)
    total = len(runs.run_entries(run))
    UploadRun.objects.filter(pk=run.pk).update(progress_total=total)
    chunks = run_chunks(total, min_size=runs.CHUNK_MIN_FILES)
    args = [(run.pk, a, b) for a, b in chunks]
    connection.close()  # forked children must not share the parent's connection

    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    started, cpu_started = time.perf_counter(), cpu()
    if processes == 1:
        for arg in args:
            _run_chunk(arg)
    else:
        with get_context("fork").Pool(processes) as pool:
            pool.map(_run_chunk, args, chunksize=1)
    wall = time.perf_counter() - started
    spent = cpu() - cpu_started
    run.refresh_from_db()
    return total / wall, total / spent, f"{run.status}: {run.message}"


def _run_chunk(args: tuple[int, int, int]) -> str:
    from django.db import connection

    from albums.runs import upload_chunk_execute

    try:
        return upload_chunk_execute(*args)
    finally:
        connection.close()


def bench_end_to_end(count: int, limit: float, limit_cpu: float) -> None:
    """1 MP JPEGs through the real upload run path on 1 and 2 processes, new
    images each time (files written and durable, rows, album links), against
    the Pillow-only limit measured above; with Linux syncfs and with an fsync
    per file and folder (what other systems get)."""
    from imagineer_project.lib import storage

    print(f"end to end: a folder import (upload run) of {count} new 1 MP JPEGs:")
    syncfs = getattr(storage, "_syncfs", None)
    # A tree without batched durability (the baseline commit) runs as it is.
    ways = ["syncfs", "fsync"] if hasattr(storage, "durable_batch") else ["as is"]
    seed = 10_000
    with tempfile.TemporaryDirectory(prefix="imagineer-bench-e2e-") as tmp:
        for sync in ways:
            if sync == "syncfs" and syncfs is None:
                continue
            if sync != "as is":
                storage._syncfs = syncfs if sync == "syncfs" else None
            for processes in (1, 2):
                folder = Path(tmp) / f"{sync}-{processes}"
                folder.mkdir()
                for n in range(count):
                    data = distinct_photo_jpeg(seed := seed + 1)
                    (folder / f"{n:05d}.jpg").write_bytes(data)
                wall, per_cpu, summary = _upload_run(folder, processes)
                print(
                    f"  {sync}, {processes} process{'es' if processes > 1 else ''}"
                    f"{'' if processes > 1 else '  '}  {wall:7.1f}/s  "
                    f"{per_cpu:7.1f}/cpu-s  cpu {per_cpu / limit_cpu:.0%} of the "
                    f"limit, wall {wall / limit:.2f}x 1 core's   ({summary})"
                )
    if hasattr(storage, "_syncfs"):
        storage._syncfs = syncfs


def bench_durability(folder: Path, reps: int = 12) -> None:
    """Wall time to make one batch's files durable (16 images: a 240 kB
    original and a 10 kB thumbnail each, in content-hash folders): syncfs,
    concurrent fsyncs (where syncfs is missing), and the old fsync per file
    and per folder one after another; interleaved, median per image."""
    import os
    import statistics

    from django.core.files.base import ContentFile

    from imagineer_project.lib import storage

    if not hasattr(storage, "durable_batch"):
        return
    store = storage.AtomicFileSystemStorage(location=folder)
    big, small = os.urandom(240_000), os.urandom(10_000)
    syncfs, times = storage._syncfs, {"syncfs": [], "fsync": [], "one by one": []}
    n = 0
    for _ in range(reps):
        for way in times:
            storage._syncfs = syncfs if way == "syncfs" else None
            files = []
            for _ in range(16):
                n += 1
                h = hashlib.sha256(str(n).encode()).hexdigest()
                files.append((f"images/{h[:2]}/{h[2:4]}/{h}.jpg", big))
                files.append((f"thumbnails/256/{h[:2]}/{h[2:4]}/{h}.webp", small))
            started = time.perf_counter()
            one_by_one = way == "one by one"
            with contextlib.nullcontext() if one_by_one else storage.durable_batch():
                for key, data in files:
                    store.save(key, ContentFile(data))
            times[way].append((time.perf_counter() - started) * 1000 / 16)
    storage._syncfs = syncfs
    print("files of one batch written and durable, median ms per image (wall):")
    base = statistics.median(times["one by one"])
    for way, values in times.items():
        median = statistics.median(values)
        print(f"  {way:10}  {median:6.2f} ms  ({base / median:.1f}x the old way)")


def bench_rows(sizes: list[int]) -> None:
    from django.db import transaction

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
            with transaction.atomic():
                runs._record(run, batch)
            runs._checkpoint_after(run, "x")
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
    parser.add_argument(
        "--e2e-images",
        type=int,
        default=256,
        help="images per end-to-end upload run (several chunks per process)",
    )
    parser.add_argument(
        "--rows", default="1000,5000,20000", help="sizes, or empty to skip"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagineer-bench-ingest-") as tmp:
        setup_django(Path(tmp))
        limit, limit_cpu = bench_ingest(args.images)
        bench_end_to_end(args.e2e_images, limit, limit_cpu)
        bench_durability(Path(tmp) / "durability")
        if args.rows:
            bench_rows([int(s) for s in args.rows.split(",")])


if __name__ == "__main__":
    main()
