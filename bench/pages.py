"""Benchmark (run by hand or `make bench`): pages and lists under gunicorn.

Against one PostgreSQL database holding a 100k-image album (built by bulk SQL),
it serves the code of this tree and the code of a baseline commit (a git
worktree of --baseline, default the skeleton of the performance issue), each
through gunicorn with `serve --production`'s settings, and drives each of the
image list, the home page, an album page and an image page with 20 concurrent
keep-alive clients. Prints requests/s and p99 for both and their ratios.
Asserts nothing: timing never goes into tests (docs/benchmarks.md, "Pages").
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SETUP = """
import django, os
django.setup()
from django.db import connection
from albums.services import album_create, album_add_images
from albums.tests.builders import make_image
from albums.counts import albums_recount
from albums.models import Album
from django.db import transaction
n = int(os.environ["BENCH_IMAGES"])
if not Album.objects.filter(slug="big").exists():
    big = album_create(name="Big", slug="big")
    for k in range(5):
        album_add_images(album=album_create(name=f"Small {k}"),
                         images=[make_image(seed=k * 10 + j) for j in range(5)])
    seed = make_image(seed=999, album=big)
    with connection.cursor() as c:
        # Rows only (the files of one real image): the pages read rows.
        c.execute('''INSERT INTO albums_image (sha256, file, width, height, format,
            bytes, is_animated, phash, original_filename, source_kind, source_url,
            page_url, source_headers, is_nsfw, nsfw_source, visibility,
            review_status, created, updated)
            SELECT md5(g::text) || md5((g + 1)::text), %s, 64, 48, 'JPEG', 1000,
            false, g, 'b-' || g || '.jpg', 'upload', '', '', '{}', g %% 50 = 0, '',
            'public', 'unreviewed', now(), now() FROM generate_series(1, %s) g''',
            [seed.file.name, n - 1])
        c.execute('''INSERT INTO albums_albumimage
            (album_id, image_id, position, created) SELECT %s, id, 1 + row_number() OVER (ORDER BY id), now()
            FROM albums_image WHERE original_filename LIKE 'b-%%' ''', [big.pk])
    with transaction.atomic():
        albums_recount([big.pk])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(database: str, media: str) -> dict[str, str]:
    return os.environ | {
        "DATABASE_URL": database,
        "DEBUG": "0",
        "SECRET_KEY": "bench-" + "x" * 60,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MEDIA_ROOT": media,
        "DJANGO_SETTINGS_MODULE": "imagineer_project.settings",
    }


def serve(
    tree: Path, env: dict[str, str], workers: int
) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "gunicorn",
            "-c",
            "python:imagineer_project.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
        ],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


def drive(port: int, path: str, clients: int, seconds: float) -> tuple[float, float]:
    """requests/s and p99 (ms) of `clients` keep-alive clients for `seconds`."""
    latencies: list[float] = []
    errors: list[int] = []
    stop = time.perf_counter() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.perf_counter() < stop:
            started = time.perf_counter()
            conn.request("GET", path, headers={"X-Forwarded-Proto": "https"})
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                errors.append(response.status)
        latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        print(f"    {path}: {len(errors)} non-200 answers, e.g. {errors[0]}")
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    return len(latencies) / elapsed, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database", default="postgres://postgres@127.0.0.1:5432/imagineer_p3_bench"
    )
    parser.add_argument("--baseline", default="cebf6ed")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--workers", type=int, default=5)
    args = parser.parse_args()
    media = tempfile.mkdtemp(prefix="bench-pages-")
    env = env_for(args.database, media)
    name = args.database.rsplit("/", 1)[1]
    subprocess.run(
        ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True
    )
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    subprocess.run([PY, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [PY, "-c", SETUP],
        cwd=ROOT,
        env=env | {"BENCH_IMAGES": str(args.images)},
        check=True,
    )
    ids = subprocess.run(
        [
            PY,
            "-c",
            "import django;django.setup();from albums.models import Image;"
            "print(Image.objects.order_by('id').first().pk)",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    paths = {
        "image list": "/api/images",
        "home page": "/",
        "album list API": "/api/albums",
        "album page": "/albums/big/",
        "image page": f"/images/{ids[0]}/",
    }
    base_tree = Path(tempfile.mkdtemp(prefix="bench-base-")) / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(base_tree), args.baseline],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    for tree in (base_tree, ROOT):  # each tree's own static manifest
        subprocess.run(
            [PY, "manage.py", "collectstatic", "--no-input", "-v0"],
            cwd=tree,
            env=env,
            check=True,
        )
    results: dict[str, dict[str, tuple[float, float]]] = {}
    try:
        for label, tree in (("baseline", base_tree), ("this tree", ROOT)):
            proc, port = serve(tree, env, args.workers)
            try:
                for what, path in paths.items():
                    drive(port, path, 2, 1)  # warm up every worker
                    results.setdefault(what, {})[label] = drive(
                        port, path, args.clients, args.seconds
                    )
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(base_tree)],
            cwd=ROOT,
            check=False,
        )
    print(
        f"Pages under gunicorn ({args.workers} workers), PostgreSQL, {args.clients} clients, "
        f"{args.images:,}-image album; baseline {args.baseline}:"
    )
    for what, both in results.items():
        (b_rps, b_p99), (n_rps, n_p99) = both["baseline"], both["this tree"]
        print(
            f"  {what:15} {n_rps:7.0f} req/s p99 {n_p99:6.1f} ms | baseline {b_rps:6.0f} "
            f"req/s p99 {b_p99:6.1f} ms | x{n_rps / b_rps:.2f} req/s (target x3, p99 < 100 ms)"
        )


if __name__ == "__main__":
    main()
