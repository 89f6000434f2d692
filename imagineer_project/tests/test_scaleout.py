"""Scale-out, proven (`make scaleout`, docs/benchmarks.md "Scale-out").

On loopback: PostgreSQL (a fresh database), Redis, S3 (moto's server), one
gunicorn web process with two workers, two general django-q2 workers and one
gpu worker, each with its own IMAGINEER_VAR_DIR as separate hosts would have.
Through the API only it uploads a zip, scrapes a local site, labels with the
local fake Messages API, trains a tiny LoRA and generates with it, then checks
what an operator relies on: files live in S3 only, both general workers took
work, a worker killed with -9 mid-crawl is recovered by the other, the scrape
rate limit holds across web processes, and /metrics counts the runs.

The tests run in file order (-p no:randomly) on one stack; each figure it
measures is printed at the end.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagineer_project.testing import make_image_bytes
from imagineer_project.testing.fake_anthropic import (
    API_KEY,
    FakeAnthropic,
    colour_reply,
)
from imagineer_project.testing.scaleout import (
    Missing,
    ScaleOut,
    base_env,
    free_port,
    make_root,
    require_parts,
    start_backing_services,
)
from imagineer_project.testing.site import SiteHandler, serve_loopback

pytestmark = pytest.mark.scaleout

SCRAPE_LIMIT = 6  # per user per hour: the admin's own scrapes stay under it
METRICS_TOKEN = "scaleout-metrics-token"
TRIGGER = "sclt"
# Page chains on the sample site: (pages, images per page, seconds per page).
CHAINS = {"alpha": (3, 3, 0.3), "beta": (3, 3, 0.3), "kill": (10, 2, 1.0)}
# What the reverse proxy in front adds (the app trusts it: SECURE_PROXY_SSL).
PROXY = {"X-Forwarded-Proto": "https"}
# A few steps of the tiny model at 64 px (as `make demo` trains it).
TINY_TRAINING = {
    "steps": 12,
    "resolution": 64,
    "batch_size": 4,
    "gradient_accumulation": 1,
    "warmup_steps": 2,
    "learning_rate": 5e-3,
    "sample_steps": 4,
    "mixed_precision": "no",
}
FIGURES: dict[str, str] = {}
STARTED = time.monotonic()


# --- the sample site ------------------------------------------------------------------


class ChainSite(SiteHandler):
    """/<chain>/<n>.html links to the next page and shows its images, after a
    delay (a slow site, so a crawl can be killed in the middle); /empty.html
    has nothing to take."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/robots.txt":
            return self.answer(b"User-agent: *\nAllow: /\n", "text/plain")
        if path == "/empty.html":
            return self.answer(b"<html><body><p>nothing</p></body></html>", "text/html")
        page = re.fullmatch(r"/(\w+)/(\d+)\.html", path)
        image = re.fullmatch(r"/img/(\w+)-(\d+)-(\d+)\.png", path)
        if page and page[1] in CHAINS:
            chain, n = page[1], int(page[2])
            pages, per_page, delay = CHAINS[chain]
            time.sleep(delay)
            figures = "".join(
                f'<figure><img src="/img/{chain}-{n}-{i}.png" alt="a {chain} shape '
                f'{n} {i}" width="96" height="96"><figcaption>a {chain} shape {n} '
                f"{i}</figcaption></figure>"
                for i in range(per_page)
            )
            link = f'<a href="/{chain}/{n + 1}.html">next</a>' if n + 1 < pages else ""
            body = f"<html><body>{figures}{link}</body></html>"
            return self.answer(body.encode(), "text/html")
        if image and image[1] in CHAINS:
            seed = hash((image[1], int(image[2]), int(image[3]))) % 100_000
            data = make_image_bytes("PNG", (96, 96), seed=seed)
            return self.answer(data, "image/png")
        self.send_error(404)


def chain_images(chain: str) -> int:
    pages, per_page, _ = CHAINS[chain]
    return pages * per_page


# --- the stack ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve_loopback(ChainSite) as url:
        yield url


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(default=colour_reply, keep_requests=False) as api:
        yield api


def _web_argv(port: int) -> list[str]:
    """`serve --production --no-worker` (gunicorn, two workers)."""
    return [
        sys.executable,
        "manage.py",
        "serve",
        "--production",
        "--no-worker",
        "--workers",
        "2",
        "--addr",
        f"127.0.0.1:{port}",
    ]


@pytest.fixture(scope="module")
def stack(fake_api: FakeAnthropic) -> Iterator[ScaleOut]:
    try:
        require_parts()
    except Missing as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the scale-out suite: {missing}")
        pytest.skip(f"scale-out suite skipped: {missing}")
    root = make_root()
    shared_model = root / "shared" / "tiny-sd"
    stack = ScaleOut(root=root)
    try:
        stack.env = base_env(
            ANTHROPIC_BASE_URL=fake_api.base_url,
            ANTHROPIC_API_KEY=API_KEY,
            SCRAPER_ALLOW_PRIVATE_ADDRESSES="1",
            SCRAPER_MAX_CONCURRENCY="2",
            IMAGINEER_RUN_STALE_AFTER="30",
            IMAGINEER_RUN_HEARTBEAT="2",
            IMAGINEER_RATE_LIMITS=f"scrape={SCRAPE_LIMIT}/h",
            IMAGINEER_METRICS_TOKEN=METRICS_TOKEN,
            Q_WORKERS="1",
            TRAINING_BASE_MODEL=str(shared_model),
            TRAINING_DEVICE="cpu",
            TRAINING_MIXED_PRECISION="no",
            TRAINING_MIN_CAPTIONED="4",
            GENERATION_MIXED_PRECISION="no",
            # Behind a TLS-terminating proxy (which the requests below imitate
            # with X-Forwarded-Proto), so the HTTPS redirect stays on.
            SECURE_PROXY_SSL="1",
            # django-q2's "processing <task>" lines tell the workers apart.
            IMAGINEER_LOG_LEVELS="django-q=INFO",
            # The access log names the gunicorn worker (pid) that answered.
            GUNICORN_CMD_ARGS="--access-logfile - --access-logformat "
            + shlex.quote('access pid=%(p)s "%(r)s" %(s)s'),
        )
        start_backing_services(stack)
        stack.env["IMAGINEER_ADMIN_USER"] = "admin"
        # Each Django start costs seconds of CPU: what does not depend on
        # another step runs beside it (the tiny model needs no database).
        with ThreadPoolExecutor(3) as pool:
            tiny = pool.submit(
                stack.manage, "make_tiny_model", str(shared_model), host="gpu-worker"
            )
            stack.manage("migrate", "--noinput")
            admin = pool.submit(_admin_token, stack)
            limited = pool.submit(stack.manage, "shell", "-c", LIMITED_USER)
            _start_processes(stack, shared_model)
            stack.tokens["admin"] = admin.result()
            stack.tokens["limited"] = limited.result().strip().splitlines()[-1]
            tiny.result()
        stack.wait(
            lambda: (
                httpx.get(
                    f"{stack.base_url}/api/health", headers=PROXY, timeout=10
                ).status_code
                == 200
            ),
            timeout=180,
            what="/api/health to answer 200 (web up, a worker alive)",
        )
        for name in ("worker-1", "worker-2", "gpu-worker"):
            stack.wait(
                lambda name=name: "pushing tasks" in stack.procs[name].text(),
                timeout=90,
                what=f"{name} to take tasks",
            )
        FIGURES["stack start (s)"] = f"{time.monotonic() - STARTED:.0f}"
        yield stack
    finally:
        stack.close()


def _start_processes(stack: ScaleOut, shared_model: Path) -> None:
    """The web host (gunicorn, two workers), two general worker hosts and the
    gpu worker host, each with its own data directory."""
    port = free_port()
    stack.base_url = f"http://127.0.0.1:{port}"
    stack.spawn("web", _web_argv(port), stack.host_env("web"))
    for name in ("worker-1", "worker-2"):
        stack.spawn(
            name, [sys.executable, "manage.py", "qcluster"], stack.host_env(name)
        )
    # Every "host" shares this machine's cores: torch on one thread, since its
    # OpenMP threads spin when the other processes hold the cores.
    stack.spawn(
        "gpu-worker",
        [sys.executable, "manage.py", "qcluster"],
        stack.host_env("gpu-worker", Q_CLUSTER_NAME="gpu", OMP_NUM_THREADS="1"),
    )


def _admin_token(stack: ScaleOut) -> str:
    """The first admin (`ensure_admin`, as `make run` makes it) and its token."""
    stack.manage("ensure_admin")
    return stack.manage("create_api_token", "admin").strip().splitlines()[-1].strip()


# A second staff user, whose own scrape limit the rate-limit test spends.
LIMITED_USER = (
    "from django.contrib.auth import get_user_model; "
    "from imagineer_project.tokens import api_token_create; "
    "user = get_user_model().objects.create_user("
    "'limited', password='pw-scaleout-only', is_staff=True); "
    "print(api_token_create(user=user, name='scale-out')[1])"
)


def api(stack: ScaleOut, user: str = "admin") -> httpx.Client:
    token = stack.tokens[user]
    return httpx.Client(
        base_url=stack.base_url,
        headers={"Authorization": f"Bearer {token}", **PROXY},
        timeout=60,
    )


def wait_run(
    stack: ScaleOut, client: httpx.Client, url: str, *, timeout: float
) -> dict[str, Any]:
    """Poll a run's URL until it has ended; fail unless it succeeded."""

    def ended() -> dict[str, Any] | None:
        body = client.get(url).json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    body = stack.wait(ended, timeout=timeout, what=f"{url} to end")
    assert body["status"] == "succeeded", f"{url}: {body}\n{stack.logs()}"
    return body


def _zip_of(count: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for n in range(count):
            archive.writestr(f"set/{n}.png", make_image_bytes("PNG", (80, 64), seed=n))
    return buf.getvalue()


def _scrape(client: httpx.Client, url: str, album: str) -> httpx.Response:
    return client.post(
        "/api/scrape-jobs",
        json={
            "url": url,
            "album_name": album,
            "max_depth": 10,
            "max_pages": 30,
            "render": "never",
            "min_width": 64,
            "min_height": 64,
            # One page at a time: the kill lands in the middle of the chain.
            "per_host_concurrency": 1,
        },
    )


def _location(response: httpx.Response) -> str:
    assert response.status_code in (201, 202), response.text
    location = response.headers.get("Location")
    if location:
        return location
    return f"/api/scrape-jobs/{response.json()['id']}"


def _runs_processed(stack: ScaleOut, worker: str) -> set[str]:
    """The kinds of user-started runs a worker ran (their tasks are named
    `<kind>-<id>`, scheduled ones are not)."""
    names = [name for name, _ in _processed(stack, worker)]
    return {m[1] for m in map(re.compile(r"([a-z]+)-\d+$").match, names) if m}


def _processed(stack: ScaleOut, worker: str) -> list[tuple[str, str]]:
    """The tasks a general worker ran, from django-q2's 'processing' log lines."""
    return re.findall(r"processing (\S+) '([\w.]+)'", stack.procs[worker].text())


# --- the pipeline ---------------------------------------------------------------------


def test_pipeline_through_the_api(stack: ScaleOut, site: str) -> None:
    client = api(stack)
    started = time.monotonic()
    # Three jobs at once: a zip upload and two crawls.
    upload = client.post(
        "/api/images/bulk-upload",
        data={"album_name": "Zip upload"},
        files={"files": ("set.zip", _zip_of(6), "application/zip")},
    )
    assert upload.status_code == 202, upload.text
    runs = [
        f"/api/uploads/{upload.json()['id']}",
        _location(_scrape(client, f"{site}/alpha/0.html", "Alpha")),
        _location(_scrape(client, f"{site}/beta/0.html", "Beta")),
    ]
    ended = [wait_run(stack, client, url, timeout=240) for url in runs]
    alpha = client.get(f"/api/albums/{ended[1]['album']['id']}").json()
    assert alpha["image_count"] == chain_images("alpha"), alpha

    label = client.post(f"/api/albums/{alpha['id']}/label", json={"style": "training"})
    assert label.status_code == 202, label.text
    labeled = wait_run(stack, client, label.headers["Location"], timeout=90)
    assert labeled["labeled_count"] == chain_images("alpha"), labeled

    train = client.post(
        "/api/training/runs",
        json={
            "albums": [alpha["id"]],
            "name": "scale-out LoRA",
            "trigger_word": TRIGGER,
            "config": {"rank": 4, "alpha": 4.0, "checkpoint_every": 0},
            "start": False,
        },
    )
    assert train.status_code == 202, train.text
    run_id = train.json()["id"]
    # The API's floor (500 steps at 256 px) is for real training; like
    # `manage.py train --steps` may, the suite trains a few steps of the tiny
    # model on the CPU: its stored config is lowered before the start.
    stack.sql(
        "UPDATE training_trainingrun SET config = config || %s::jsonb,"
        " progress_total = %s WHERE id = %s",
        json.dumps(TINY_TRAINING),
        TINY_TRAINING["steps"],
        run_id,
    )
    start = client.post(f"/api/training/runs/{run_id}/start")
    assert start.status_code == 202, start.text
    trained = wait_run(stack, client, f"/api/training/runs/{run_id}", timeout=240)
    assert trained["lora_id"], trained

    generate = client.post(
        "/api/generate",
        json={
            "prompt": "a shape",
            "steps": 2,
            "width": 64,
            "height": 64,
            "num_images": 1,
            "seed": 1,
            "loras": [{"id": trained["lora_id"], "weight": 0.8}],
        },
    )
    assert generate.status_code == 202, generate.text
    generated = wait_run(stack, client, generate.headers["Location"], timeout=120)
    assert generated["images"], generated
    elapsed = time.monotonic() - started
    jobs = len(runs) + 3
    FIGURES["pipeline jobs"] = f"{jobs} in {elapsed:.0f} s"
    FIGURES["jobs per minute"] = f"{jobs / elapsed * 60:.1f}"
    FIGURES["_lora_id"] = str(trained["lora_id"])
    FIGURES["_generated_image"] = str(generated["images"][0]["id"])


def test_every_file_is_in_s3_and_none_on_local_disks(stack: ScaleOut) -> None:
    client = api(stack)
    keys = stack.s3_keys()
    assert stack.media_files() == {}, "files written to a local media folder"
    assert any(k.startswith("images/") for k in keys), keys
    assert any(k.startswith("thumbnails/") for k in keys), keys
    lora = client.get(f"/api/loras/{FIGURES['_lora_id']}").json()
    assert f"loras/{lora['sha256']}.safetensors" in keys, keys
    image = client.get(f"/api/images/{FIGURES['_generated_image']}").json()
    assert any(image["sha256"] in k and k.startswith("images/") for k in keys)
    # Every image the library holds has its original in the bucket.
    shas = [row[0] for row in stack.sql("SELECT sha256 FROM albums_image")]
    missing = [sha for sha in shas if not any(sha in k for k in keys)]
    assert shas and not missing, f"{len(missing)} images not in S3"


# --- a worker killed mid-crawl --------------------------------------------------------


def test_kill9_mid_scrape_is_recovered_by_the_other_worker(
    stack: ScaleOut, site: str
) -> None:
    client = api(stack)
    before = {name: len(_processed(stack, name)) for name in ("worker-1", "worker-2")}
    url = _location(_scrape(client, f"{site}/kill/0.html", "Killed mid-crawl"))
    job_id = int(url.rstrip("/").rsplit("/", 1)[-1])

    def crawling() -> str | None:
        body = client.get(url).json()
        if body["status"] != "running" or not body["progress"]["done"]:
            return None
        for name, seen in before.items():
            if any("scrap" in f for _, f in _processed(stack, name)[seen:]):
                return name
        return None

    victim = stack.wait(crawling, timeout=60, what="the crawl to be under way")
    survivor = "worker-2" if victim == "worker-1" else "worker-1"
    stack.procs[victim].kill9()
    killed_at = time.monotonic()
    # The reaper runs every 2 minutes; bring its turn forward to the moment the
    # heartbeat goes stale (IMAGINEER_RUN_STALE_AFTER=30 after the last beat).
    stack.sql(
        "UPDATE django_q_schedule SET next_run = "
        "(SELECT heartbeat_at FROM scraping_scrapejob WHERE id = %s)"
        " + interval '31 seconds' WHERE name = 'reap-stale-runs'",
        job_id,
    )
    done = wait_run(stack, client, url, timeout=150)
    FIGURES["recovery after kill -9 (s)"] = f"{time.monotonic() - killed_at:.0f}"
    assert done["attempts"] >= 2, done
    assert any("scrap" in f for _, f in _processed(stack, survivor)[before[survivor] :])
    album = done["album"]["id"]
    items = client.get(f"/api/albums/{album}/images?limit=100").json()["items"]
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)) == chain_images("kill"), ids


def test_work_was_spread_over_both_general_workers(stack: ScaleOut) -> None:
    """Each general worker ran runs' tasks (the pipeline's three first jobs are
    queued at once; the killed crawl ran on one and ended on the other), and
    training and generation ran on the gpu worker."""
    ran = {name: _runs_processed(stack, name) for name in stack.procs}
    # Scheduled maintenance runs everywhere; the runs a user started count here.
    assert ran["worker-1"] and ran["worker-2"], ran
    assert {"trainingrun", "generationjob"} <= ran["gpu-worker"], ran
    assert not ran["gpu-worker"] & (ran["worker-1"] | ran["worker-2"]), ran


# --- the rate limit across web processes ----------------------------------------------


def test_scrape_rate_limit_holds_across_both_web_processes(
    stack: ScaleOut, site: str
) -> None:
    web_log = len(stack.procs["web"].text())
    token = stack.tokens["limited"]
    fired = SCRAPE_LIMIT + 4
    gate = threading.Barrier(fired)
    answers: list[httpx.Response] = []

    def fire(n: int) -> None:
        gate.wait()
        # A fresh connection per request: gunicorn hands each to either worker.
        with httpx.Client(
            base_url=stack.base_url,
            headers={"Authorization": f"Bearer {token}", **PROXY},
            timeout=60,
        ) as client:
            answers.append(_scrape(client, f"{site}/empty.html", f"Limited {n}"))

    threads = [threading.Thread(target=fire, args=(n,)) for n in range(fired)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * SCRAPE_LIMIT + [429] * (fired - SCRAPE_LIMIT), codes
    refused = [r for r in answers if r.status_code == 429]
    assert all(r.json()["error_code"] == "rate_limited" for r in refused)
    assert all(r.headers.get("Retry-After") for r in refused)
    pids = set(
        re.findall(
            r'access pid=<?(\d+)>? "POST /api/scrape-jobs',
            stack.procs["web"].text()[web_log:],
        )
    )
    assert len(pids) == 2, f"the requests reached web workers {pids}"
    for response in answers:
        if response.status_code == 201:
            wait_run(stack, api(stack, "limited"), _location(response), timeout=60)


# --- metrics --------------------------------------------------------------------------


def test_metrics_count_the_runs(stack: ScaleOut) -> None:
    anonymous = httpx.get(f"{stack.base_url}/metrics", headers=PROXY)
    assert anonymous.status_code in (401, 403, 404), anonymous.status_code
    response = httpx.get(
        f"{stack.base_url}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}", **PROXY},
    )
    assert response.status_code == 200, response.text
    succeeded: dict[str, float] = {}
    for line in response.text.splitlines():
        # imagineer_runs{kind="scrapejob",status="succeeded"} 9.0
        sample = re.match(r"imagineer_runs\{([^}]*)\} (\S+)$", line)
        labels = dict(re.findall(r'(\w+)="([^"]*)"', sample[1])) if sample else {}
        if labels.get("status") == "succeeded":
            succeeded[labels["kind"]] = float(sample[2])
    [(scrapes,)] = stack.sql(
        "SELECT count(*) FROM scraping_scrapejob WHERE status = 'succeeded'"
    )
    # Two crawls, the one killed and recovered, the limited user's admitted ones.
    assert scrapes == 3 + SCRAPE_LIMIT
    assert succeeded.get("scrapejob") == scrapes, succeeded
    for kind in ("uploadrun", "labelingjob", "trainingrun", "generationjob"):
        assert succeeded.get(kind, 0) >= 1, (kind, succeeded)


def test_figures(stack: ScaleOut, capsys: pytest.CaptureFixture[str]) -> None:
    """Print the figures (docs/benchmarks.md, "Scale-out"); SCALEOUT_FIGURES
    names a file to write them to as well."""
    FIGURES["suite (s)"] = f"{time.monotonic() - STARTED:.0f}"
    lines = [f"scale-out {k}: {v}" for k, v in FIGURES.items() if not k.startswith("_")]
    with capsys.disabled():
        sys.stdout.write("\n" + "\n".join(lines) + "\n")
    out = os.environ.get("SCALEOUT_FIGURES")
    if out:
        Path(out).write_text("\n".join(lines) + "\n")
    assert "recovery after kill -9 (s)" in FIGURES
