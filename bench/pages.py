"""Benchmark (run by hand or `make bench`): pages under gunicorn, baseline vs now.

One PostgreSQL database holds a 100k-image album (rows made by bulk SQL; every
row points at one real file). The code of this tree and the code of a baseline
commit (a git worktree of --baseline: by default the code just before the
performance issue's skeleton, which leaves the skeleton's extra columns unread)
are both served through gunicorn as `serve --production` serves them (each
tree's config file, 2 x cores + 1 workers, DEBUG off, prometheus multiprocess
mode, HTTPS behind a proxy). One asyncio client keeps 20 connections busy on
each page, after a warm-up, alternating between the two servers in rounds so
that both see the same load from elsewhere. Printed per page: requests/s, p50
and p99 for both trees and the ratio; then the in-process p50/p99 of the album
list and the home page (Django's test client, no server), for both trees.

The machine's load average is printed with the figures: on a shared machine the
ratio, measured in one invocation, is what counts. Asserts nothing: timing
never goes into tests (docs/benchmarks.md, "Pages").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SETUP = """
import django, os
django.setup()
from django.db import connection, transaction
from albums.services import album_create, album_add_images
from albums.tests.builders import make_image
from albums.counts import albums_recount
from albums.models import Album
n = int(os.environ["BENCH_IMAGES"])
big = album_create(name="Big", slug="big")
for k in range(5):
    album_add_images(album=album_create(name=f"Small {k}"),
                     images=[make_image(seed=k * 10 + j) for j in range(5)])
seed = make_image(seed=999, album=big)
with connection.cursor() as c:
    # Rows only (the file of one real image): the pages read rows.
    c.execute('''INSERT INTO albums_image (sha256, file, width, height, format,
        bytes, is_animated, phash, original_filename, source_kind, source_url,
        page_url, source_headers, is_nsfw, nsfw_source, visibility,
        review_status, created, updated)
        SELECT md5(g::text) || md5((g + 1)::text), %s, 64, 48, 'JPEG', 1000,
        false, g, 'b-' || g || '.jpg', 'upload', '', '', '{}', g %% 50 = 0, '',
        'public', 'unreviewed', now(), now() FROM generate_series(1, %s) g''',
        [seed.file.name, n - 1])
    c.execute('''INSERT INTO albums_albumimage (album_id, image_id, position, created)
        SELECT %s, id, 1 + row_number() OVER (ORDER BY id), now()
        FROM albums_image WHERE original_filename LIKE 'b-%%' ''', [big.pk])
    c.execute("ANALYZE")
with transaction.atomic():
    albums_recount([big.pk])
"""
# Run inside each tree: Django's test client against the same database.
IN_PROCESS = """
import django, json, sys, time
django.setup()
from django.test import Client
client = Client(headers={"X-Forwarded-Proto": "https"})
out = {}
for path in sys.argv[1:]:
    for _ in range(3):
        assert client.get(path).status_code == 200, path
    # 300 requests, or as many as fit in 20 s (the baseline counts 100k rows).
    times = []
    budget = time.perf_counter() + 20
    while len(times) < 300 and (len(times) < 10 or time.perf_counter() < budget):
        started = time.perf_counter()
        client.get(path)
        times.append((time.perf_counter() - started) * 1000)
    out[path] = sorted(times)
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(database: str, var: str) -> dict[str, str]:
    # What `serve --production` gives its children, behind a TLS proxy.
    return os.environ | {
        "DATABASE_URL": database,
        "DEBUG": "0",
        "SECRET_KEY": "bench-" + "x" * 60,
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "IMAGINEER_VAR_DIR": var,
        "IMAGINEER_ENVIRONMENT": "production",
        "SECURE_PROXY_SSL": "1",
        "DJANGO_SETTINGS_MODULE": "imagineer_project.settings",
    }


def serve(
    tree: Path, env: dict[str, str], workers: int
) -> tuple[subprocess.Popen, int]:
    port = free_port()
    metrics = tempfile.mkdtemp(prefix="bench-prom-")
    proc = subprocess.Popen(
        [PY, "-m", "gunicorn", "-c", "python:imagineer_project.gunicorn_conf"]
        + ["--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
        cwd=tree,
        env=env | {"PROMETHEUS_MULTIPROC_DIR": metrics},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("gunicorn did not start")


async def drive(port: int, path: str, clients: int, seconds: float) -> dict:
    """`clients` keep-alive connections asking for `path` for `seconds`."""
    url = f"http://127.0.0.1:{port}{path}"
    headers = {"X-Forwarded-Proto": "https"}
    latencies: list[float] = []
    failures: list[str] = []
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        stop = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        if response.status != 200:
                            failures.append(str(response.status))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures.append(type(exc).__name__)
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return {"latencies": latencies, "elapsed": elapsed, "failures": failures}


def percentile(ordered: list[float], p: int) -> float:
    if len(ordered) < 2:
        return ordered[0] if ordered else float("nan")
    return statistics.quantiles(ordered, n=100, method="inclusive")[p - 1]


def build_database(args: argparse.Namespace, env: dict[str, str]) -> None:
    name = args.database.rsplit("/", 1)[1]
    pg = ["-h", "127.0.0.1", "-U", "postgres"]
    subprocess.run(["dropdb", *pg, "--if-exists", name], check=True)
    subprocess.run(["createdb", *pg, name], check=True)
    subprocess.run([PY, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [PY, "-c", SETUP],
        cwd=ROOT,
        env=env | {"BENCH_IMAGES": str(args.images)},
        check=True,
    )


def first_image_id(env: dict[str, str]) -> int:
    out = subprocess.run(
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
    ).stdout
    return int(out.split()[-1])


def in_process(tree: Path, env: dict[str, str]) -> dict[str, dict]:
    out = subprocess.run(
        [PY, "-c", IN_PROCESS, "/api/albums", "/"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        sys.exit(f"in-process run failed in {tree}:\n{out.stderr[-3000:]}")
    results = {}
    for path, times in json.loads(out.stdout.splitlines()[-1]).items():
        seconds = [t / 1000 for t in times]
        results[f"in-process {path}"] = {
            "n": len(times),
            "p50": percentile(seconds, 50) * 1000,
            "p99": percentile(seconds, 99) * 1000,
        }
    return results


def tree_env(env: dict[str, str], tree: Path) -> dict[str, str]:
    """Each tree's own static files (manifest) and cache; the same media."""
    var = env["IMAGINEER_VAR_DIR"]
    return env | {
        "IMAGINEER_VAR_DIR": f"{var}-{tree.name}",
        "MEDIA_ROOT": f"{var}/media",
    }


def merge(rounds: list[dict]) -> dict:
    latencies = sorted(x for r in rounds for x in r["latencies"])
    return {
        "rps": len(latencies) / sum(r["elapsed"] for r in rounds),
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "failures": [f for r in rounds for f in r["failures"]],
    }


def measure(
    trees: dict[str, Path],
    env: dict[str, str],
    paths: dict[str, str],
    args: argparse.Namespace,
) -> dict[str, dict[str, dict]]:
    """Both servers run at once; each page is driven on one, then the other,
    in alternating rounds, so that both see the same load from elsewhere."""
    for tree in trees.values():
        subprocess.run(
            [PY, "manage.py", "collectstatic", "--no-input", "-v0"],
            cwd=tree,
            env=tree_env(env, tree),
            check=True,
        )
    servers = {
        label: serve(tree, tree_env(env, tree), args.workers)
        for label, tree in trees.items()
    }
    results: dict[str, dict[str, dict]] = {label: {} for label in trees}
    try:
        for what, path in paths.items():
            rounds: dict[str, list[dict]] = {label: [] for label in trees}
            for _, port in servers.values():
                asyncio.run(drive(port, path, args.clients, args.warmup))
            for _ in range(args.rounds):
                for label, (_, port) in servers.items():
                    rounds[label].append(
                        asyncio.run(
                            drive(port, path, args.clients, args.seconds / args.rounds)
                        )
                    )
            for label in trees:
                results[label][what] = r = merge(rounds[label])
                print(
                    f"  {label}: {what}: {r['rps']:.0f} req/s, p99 {r['p99']:.0f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for proc, _ in servers.values():
            proc.terminate()
        for proc, _ in servers.values():
            proc.wait(timeout=40)
    for label, tree in trees.items():
        results[label] |= in_process(tree, tree_env(env, tree))
    return results


def report(args: argparse.Namespace, results: dict[str, dict[str, dict]]) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"== Pages under gunicorn ({args.workers} sync workers), PostgreSQL, "
        f"{args.clients} clients x {args.seconds:g} s in {args.rounds} alternating "
        f"rounds, {args.images:,}-image album; "
        f"baseline {args.baseline}; {os.cpu_count()} CPUs, load average {load} =="
    )
    base, now = results["baseline"], results["this tree"]
    for what in base:
        b, n = base[what], now[what]
        if "rps" not in b:
            continue
        print(
            f"  {what:14} {n['rps']:5.0f} req/s p50 {n['p50']:5.1f} "
            f"p99 {n['p99']:5.1f} ms | baseline {b['rps']:4.0f} req/s "
            f"p50 {b['p50']:6.0f} p99 {b['p99']:6.0f} ms"
            f" | x{n['rps'] / b['rps']:.2f} (target x3, p99 < 100 ms)"
        )
        for label, r in (("this tree", n), ("baseline", b)):
            if r["failures"]:
                print(
                    f"    {label}: {len(r['failures'])} failed, e.g. {r['failures'][0]}"
                )
    print("== In process (Django test client, no server; requests measured) ==")
    for what in base:
        b, n = base[what], now[what]
        if "rps" in b:
            continue
        print(
            f"  {what:22} p50 {n['p50']:5.2f} p99 {n['p99']:5.2f} ms ({n['n']}) | "
            f"baseline p50 {b['p50']:7.2f} p99 {b['p99']:7.2f} ms ({b['n']}) | "
            f"x{b['p99'] / n['p99']:.1f} "
            "(target p99 < 10 ms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database", default="postgres://postgres@127.0.0.1:5432/imagineer_pages_bench"
    )
    # The code before the skeleton: the skeleton's new Album fields
    # broke that code's album list (an annotation of the same name).
    parser.add_argument("--baseline", default="cebf6ed^")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="alternate baseline and this tree this many times per page",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * len(os.sched_getaffinity(0)) + 1,
        help="gunicorn workers (default as `serve --production`: 2 x cores + 1)",
    )
    parser.add_argument(
        "--reuse-database",
        action="store_true",
        help="keep the database a previous run built (same --images)",
    )
    args = parser.parse_args()
    # One folder per database (a reused database keeps its one real file).
    var = Path(tempfile.gettempdir()) / f"bench-pages-{args.database.rsplit('/', 1)[1]}"
    var.mkdir(exist_ok=True)
    env = env_for(args.database, str(var))
    if not args.reuse_database:
        build_database(args, env)
    paths = {
        "image list": "/api/images",
        "home page": "/",
        "album list API": "/api/albums",
        "album page": "/albums/big/",
        "image page": f"/images/{first_image_id(env)}/",
    }
    base_tree = Path(tempfile.mkdtemp(prefix="bench-base-")) / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(base_tree), args.baseline],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    try:
        results = measure({"baseline": base_tree, "this tree": ROOT}, env, paths, args)
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(base_tree)],
            cwd=ROOT,
            check=False,
        )
    report(args, results)


if __name__ == "__main__":
    main()
