"""Benchmarks (run by hand or `make bench`): ingest throughput and API list latency.

Uses a throwaway SQLite database and media folder, never the app's own var/.
Prints figures; asserts nothing. Targets from the foundation issue:
  - ingest >= 50 images/s for 1 MP JPEGs on 2 cores (hash + thumbnails + store);
  - GET /api/albums/{id}/images on a 100k-image album: p99 < 25 ms in-process,
    with the same number of queries on every page.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(workdir: Path) -> None:
    os.environ["IMAGINEER_VAR_DIR"] = str(workdir)
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagineer_project.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def photo_like_jpeg(seed: int, size: int = 1000) -> bytes:
    """A 1 MP JPEG with gradients and noise, closer to a photo than a flat fill."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([(x + seed) % 256, (y * 2) % 256, ((x + y) // 3) % 256], axis=-1)
    noisy = base + rng.normal(0, 12, base.shape)
    im = Image.fromarray(noisy.clip(0, 255).astype("uint8"), "RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=88)
    return buf.getvalue()


def _ingest_batch(args: tuple[int, list[bytes]]) -> int:
    """Ingest a batch into an album; runs in a thread or a forked process."""
    from django.db import connection

    from albums.models import Album
    from albums.services import image_ingest

    album_id, batch = args
    album = Album.objects.get(pk=album_id)
    try:
        statuses = [
            image_ingest(
                data=d, filename="b.jpg", source_kind="upload", album=album
            ).status
            for d in batch
        ]
    finally:
        connection.close()
    return statuses.count("created")


def bench_ingest(count: int) -> None:
    import multiprocessing

    from django.db import connection

    from albums.models import Image
    from albums.services import album_create

    print("\n== Ingest: 1000x1000 JPEGs (sanitise, decode, hash, thumbnail, store) ==")
    payloads = [photo_like_jpeg(seed) for seed in range(count * 3)]
    print(f"  average file size: {statistics.mean(map(len, payloads)) / 1024:.0f} KiB")
    runs = (
        ("1 thread", ThreadPoolExecutor, 1),
        ("2 threads", ThreadPoolExecutor, 2),
        ("2 processes", None, 2),
    )
    for n, (label, pool_cls, workers) in enumerate(runs):
        batch = payloads[n * count : (n + 1) * count]
        album = album_create(name=f"bench ingest {label}")
        chunks = [(album.pk, batch[i::workers]) for i in range(workers)]
        connection.close()  # forked children must not share the parent's connection
        start = time.perf_counter()
        if pool_cls is None:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                created = sum(pool.map(_ingest_batch, chunks))
        else:
            with pool_cls(max_workers=workers) as pool:
                created = sum(pool.map(_ingest_batch, chunks))
        elapsed = time.perf_counter() - start
        assert created == len(batch), created
        print(
            f"  {label:>11}: {len(batch) / elapsed:6.1f} images/s "
            f"({1000 * elapsed / len(batch):.1f} ms/image)"
        )
    print(f"  images stored: {Image.objects.count()}")


def bench_api_list(size: int, pages: int) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from albums.models import Album, AlbumImage, Image

    print(f"\n== API list latency: album of {size:,} images, 50 per page ==")
    album = Album.objects.create(name="bench big", slug="bench-big")
    t0 = time.perf_counter()
    rows = [
        Image(
            sha256=f"{n:064x}",
            file=f"images/{n}.jpg",
            width=512,
            height=512,
            format="JPEG",
            bytes=1000,
            phash=n,
            source_kind="upload",
        )
        for n in range(size)
    ]
    rows = Image.objects.bulk_create(rows, batch_size=5000)
    ids = [row.pk for row in rows]  # bulk_create fills pks on SQLite and PostgreSQL
    AlbumImage.objects.bulk_create(
        [
            AlbumImage(album=album, image_id=i, position=n + 1)
            for n, i in enumerate(ids)
        ],
        batch_size=5000,
    )
    print(f"  seeded in {time.perf_counter() - t0:.1f}s")

    from imagineer_project.pagination import encode_cursor

    client = Client()
    url = f"/api/albums/{album.pk}/images"
    # Half the pages from the start, half from the far end of the album (a cursor
    # built for position size-pages*25): keyset pages must cost the same anywhere.
    deep = AlbumImage.objects.filter(album=album, position=size - pages * 25).first()
    starts = [None, encode_cursor([deep.position, deep.pk])]
    client.get(url)  # warm-up: first-request imports and URL resolver caches
    timings, queries = [], []
    for cursor in starts:
        for _ in range(pages // 2):
            params = {"limit": 50} | ({"cursor": cursor} if cursor else {})
            with CaptureQueriesContext(connection) as ctx:
                start = time.perf_counter()
                response = client.get(url, params)
                timings.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.content[:300]
            queries.append(len(ctx.captured_queries))
            cursor = response.json()["next_cursor"]
            if cursor is None:
                break
    report("album images", timings, queries)

    timings, queries = [], []
    for _ in range(50):
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            response = client.get("/api/albums", {"limit": 50})
            timings.append((time.perf_counter() - start) * 1000)
        queries.append(len(ctx.captured_queries))
    report(f"album list (counting a {size:,}-image album)", timings, queries)


def report(label: str, timings: list[float], queries: list[int]) -> None:
    timings = sorted(timings)
    p50 = statistics.median(timings)
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    print(
        f"  {label}: {len(timings)} requests; p50 {p50:.2f} ms; p99 {p99:.2f} ms; "
        f"max {timings[-1]:.2f} ms; queries per request {min(queries)}-{max(queries)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ingest", type=int, default=200, help="JPEGs per thread setting"
    )
    parser.add_argument("--album-size", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagineer-bench-") as tmp:
        setup_django(Path(tmp))
        print(
            f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s), scratch {tmp}"
        )
        bench_ingest(args.ingest)
        bench_api_list(args.album_size, args.pages)


if __name__ == "__main__":
    main()
