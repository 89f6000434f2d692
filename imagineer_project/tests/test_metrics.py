"""GET /metrics: who may read it, and that the figures match what happened
(real requests, real runs, real images, parsed as Prometheus would)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client
from django.utils import timezone
from django_q.brokers import get_broker
from prometheus_client.parser import text_string_to_metric_families

from albums.models import SourceKind, UploadRun
from albums.tests.builders import make_album, make_image
from imagineer_project.metrics import collectors
from imagineer_project.runs import BaseRun, run_execute
from labeling.models import LabelingJob
from training.models import DatasetVersion, TrainingRun

pytestmark = pytest.mark.django_db
S = BaseRun.Status
TOKEN = "scrape-me-0123456789"
BEARER = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, frozenset], float]


@pytest.fixture
def token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client: Any) -> Samples:
    """Every sample of one scrape, keyed by name and labels."""
    response = client.get("/metrics", **BEARER)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- who may read ---------------------------------------------------------------------


def test_metrics_is_an_unknown_url_while_no_token_is_set(
    staff_user: Any, settings: Any
) -> None:
    settings.METRICS_TOKEN = ""
    client, staff_client = Client(), Client()
    staff_client.force_login(staff_user)
    assert client.get("/metrics", **BEARER).status_code == 404
    assert staff_client.get("/metrics").status_code == 404


def test_metrics_wants_the_token_or_a_staff_session(
    staff_user: Any, plain_user: Any, token: str
) -> None:
    client, user_client, staff_client = Client(), Client(), Client()
    user_client.force_login(plain_user)
    staff_client.force_login(staff_user)
    missing = client.get("/metrics")
    assert (missing.status_code, missing["WWW-Authenticate"]) == (
        401,
        'Bearer realm="metrics"',
    )
    assert b"imagineer_" not in missing.content
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me-012345678")
    assert wrong.status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=TOKEN).status_code == 401
    assert user_client.get("/metrics").status_code == 403
    assert client.get("/metrics", **BEARER).status_code == 200
    assert b"imagineer_runs" in staff_client.get("/metrics").content
    assert client.post("/metrics", **BEARER).status_code == 405


# --- requests -------------------------------------------------------------------------


def test_requests_are_counted_by_route_pattern_not_raw_path(
    staff_user: Any, token: str
) -> None:
    client, staff_client = Client(), Client()
    staff_client.force_login(staff_user)
    first, second = make_album(name="Major arcana"), make_album(name="Minor arcana")
    route = "/api/albums/{album_ref}"
    before = scrape(client)
    for ref in (first.slug, second.slug, first.pk, "no-such-album"):
        staff_client.get(f"/api/albums/{ref}")
    client.get("/nowhere/at/all")
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"route": route, "method": "GET", "status": "200"}
    assert delta("imagineer_http_requests_total", **ok) == 3
    assert delta("imagineer_http_requests_total", **ok | {"status": "404"}) == 1
    unmatched = {"route": "<unmatched>", "method": "GET", "status": "404"}
    assert delta("imagineer_http_requests_total", **unmatched) == 1
    latency = {"route": route, "method": "GET"}
    assert delta("imagineer_http_request_duration_seconds_count", **latency) == 4
    assert (
        delta(
            "imagineer_http_request_duration_seconds_bucket", **latency | {"le": "+Inf"}
        )
        == 4
    )
    # No series names an album: labels are the patterns.
    routes = {dict(labels).get("route", "") for _, labels in after}
    assert not any(first.slug in r or second.slug in r for r in routes)
    assert "/metrics" in routes


# --- work, read from the database -----------------------------------------------------


def _ended_upload(outcome: str, seconds: int, ago: timedelta = timedelta(0)) -> Any:
    run = UploadRun.objects.create(album=make_album())
    body = (lambda r: "done") if outcome == "ok" else (lambda r: 1 / 0)
    run_execute(UploadRun, run.pk, body)
    # A known duration (and end): the row says when the attempt began.
    run.refresh_from_db()
    finished = run.finished_at - ago
    UploadRun.objects.filter(pk=run.pk).update(
        started_at=finished - timedelta(seconds=seconds), finished_at=finished
    )
    return run


def test_runs_by_kind_and_status_and_their_durations(client: Any, token: str) -> None:
    _ended_upload("ok", 20)
    _ended_upload("ok", 90, ago=timedelta(hours=3))
    _ended_upload("ok", 7, ago=timedelta(days=2))  # outside every window
    _ended_upload("fail", 3)
    UploadRun.objects.create(album=make_album())  # still queued
    LabelingJob.objects.create(model_name="m", prompt_version="v")

    samples = scrape(client)

    def runs(kind: str, status: str, name: str = "imagineer_runs") -> float:
        return value(samples, name, kind=kind, status=status)

    assert [runs("uploadrun", s) for s in S.values] == [1, 0, 3, 1, 0]
    assert runs("labelingjob", "queued") == 1
    assert runs("trainingrun", "running") == 0  # every pair, zeros included
    recent = "imagineer_runs_ended_last_hour"
    assert runs("uploadrun", "succeeded", recent) == 1
    assert runs("uploadrun", "failed", recent) == 1
    assert runs("scrapejob", "failed", recent) == 0
    # The last day's runs: 20 s and 90 s succeeded, 3 s failed.
    ok = {"kind": "uploadrun", "status": "succeeded"}
    duration = "imagineer_run_duration_seconds"
    assert value(samples, f"{duration}_gcount", **ok) == 2
    assert value(samples, f"{duration}_gsum", **ok) == pytest.approx(110, abs=0.01)
    assert value(samples, f"{duration}_bucket", **ok, le="5.0") == 0
    assert value(samples, f"{duration}_bucket", **ok, le="30.0") == 1
    assert value(samples, f"{duration}_bucket", **ok, le="300.0") == 2
    assert value(samples, f"{duration}_bucket", **ok, le="+Inf") == 2
    failed = {"kind": "uploadrun", "status": "failed"}
    assert value(samples, f"{duration}_bucket", **failed, le="5.0") == 1
    assert value(samples, "imagineer_metrics_source_up", source="run_durations") == 1


def test_images_by_source_kind(client: Any, token: str) -> None:
    make_image(seed=1)
    make_image(seed=2)
    make_image(seed=3, source_kind=SourceKind.SCRAPE)

    samples = scrape(client)

    assert value(samples, "imagineer_images", source_kind="upload") == 2
    assert value(samples, "imagineer_images", source_kind="scrape") == 1
    assert ("imagineer_images", frozenset({("source_kind", "generated")})) in samples


def test_labeling_tokens_and_cost_from_the_jobs_totals(client: Any, token: str) -> None:
    for tokens_in, tokens_out, cost in ((1000, 50, "0.012"), (500, 25, "0.006")):
        LabelingJob.objects.create(
            model_name="claude-x",
            prompt_version="v",
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=Decimal(cost),
        )

    samples = scrape(client)

    tokens = "imagineer_labeling_tokens_total"
    assert value(samples, tokens, model="claude-x", direction="input") == 1500
    assert value(samples, tokens, model="claude-x", direction="output") == 75
    cost = value(samples, "imagineer_labeling_cost_usd_total", model="claude-x")
    assert cost == pytest.approx(0.018)


def test_training_steps_per_second_of_the_running_run(client: Any, token: str) -> None:
    dataset = DatasetVersion.objects.create(name="d", manifest={}, manifest_sha256="0")
    now = timezone.now()
    TrainingRun.objects.create(
        name="live",
        dataset=dataset,
        base_model="b",
        status=S.RUNNING,
        heartbeat_at=now,
        started_at=now,
        config={"batch_size": 2, "gradient_accumulation": 2},
        images_per_second=6.0,
    )
    TrainingRun.objects.create(  # ended: not counted
        name="old",
        dataset=dataset,
        base_model="b",
        status=S.SUCCEEDED,
        images_per_second=100.0,
    )

    samples = scrape(client)

    assert value(samples, "imagineer_training_active_runs") == 1
    assert value(samples, "imagineer_training_steps_per_second") == 1.5


def test_queue_depth_per_cluster(client: Any, token: str) -> None:
    get_broker("gpu").enqueue("task-1")
    get_broker("gpu").enqueue("task-2")
    get_broker("imagineer").enqueue("task-3")

    samples = scrape(client)

    assert value(samples, "imagineer_queue_depth", cluster="gpu") == 2
    assert value(samples, "imagineer_queue_depth", cluster="imagineer") == 1
    assert ("imagineer_worker_clusters_alive", frozenset()) in samples


def test_disk_free_bytes_per_role(client: Any, token: str, settings: Any) -> None:
    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
    samples = scrape(client)

    usage = shutil.disk_usage(settings.MEDIA_ROOT)
    assert value(samples, "imagineer_disk_total_bytes", role="media") == usage.total
    free = value(samples, "imagineer_disk_free_bytes", role="media")
    assert 0 < free <= usage.total
    body = client.get("/metrics", **BEARER).content.decode()
    assert str(settings.MEDIA_ROOT) not in body  # roles, never paths


# --- several web processes ------------------------------------------------------------

RECORD_ONE_REQUEST = textwrap.dedent(
    """
    import django
    django.setup()
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.urls import resolve
    from imagineer_project.metrics import MetricsMiddleware

    request = RequestFactory().get("/api/albums/tarot")
    request.resolver_match = resolve("/api/albums/tarot")
    MetricsMiddleware(lambda r: HttpResponse(status=200))(request)
    """
)


def test_multiprocess_mode_adds_up_every_web_process(
    client: Any, token: str, tmp_path: Path, monkeypatch: Any
) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "imagineer_project.settings",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "IMAGINEER_VAR_DIR": str(tmp_path / "var"),
        "Q_SYNC": "true",
    }
    for _ in range(2):  # two processes, as two gunicorn workers
        subprocess.run(
            [sys.executable, "-c", RECORD_ONE_REQUEST],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=120,
        )
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))

    samples = scrape(client)

    labels = {"route": "/api/albums/{album_ref}", "method": "GET"}
    total = value(samples, "imagineer_http_requests_total", **labels, status="200")
    assert total == 2
    count = "imagineer_http_request_duration_seconds_count"
    assert value(samples, count, **labels) == 2
    # The scrape-time figures come along in this mode too.
    assert value(samples, "imagineer_runs", kind="uploadrun", status="queued") == 0
    assert value(samples, "imagineer_metrics_source_up", source="runs") == 1


def test_a_failing_source_is_reported_and_the_rest_still_scraped(
    client: Any, token: str, monkeypatch: Any
) -> None:
    def broken() -> Any:
        raise ConnectionError("broker away")

    monkeypatch.setitem(collectors._sources, "queue", broken)

    samples = scrape(client)

    assert value(samples, "imagineer_metrics_source_up", source="queue") == 0
    assert value(samples, "imagineer_metrics_source_up", source="runs") == 1
    assert ("imagineer_queue_depth", frozenset({("cluster", "gpu")})) not in samples


def test_the_example_alerts_name_metrics_that_exist(client: Any, token: str) -> None:
    rules = yaml.safe_load((ROOT / "docs/prometheus/alerts.yml").read_text())
    exprs = [rule["expr"] for rule in rules["groups"][0]["rules"]]
    named = {name for expr in exprs for name in re.findall(r"imagineer_\w+", expr)}

    families = {name.rsplit("_bucket", 1)[0] for name, _ in scrape(client)}

    assert len(exprs) >= 3
    assert named <= families, named - families
