"""The run machine across every kind of run: one retry, one reaper, a heartbeat
through long steps, clean-up when a run ends, and the shared API endpoints."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from albums.models import UploadRun
from albums.services import upload_run_create
from albums.tests.builders import make_album
from imagineer_project import runs
from imagineer_project.models import MaintenanceRun
from imagineer_project.runs import (
    BaseRun,
    RunNotRetryable,
    reap_stale_runs,
    run_execute,
    run_heartbeat,
    run_models,
    run_retry,
)
from imagineer_project.testing import make_image_bytes
from labeling.models import LabelingJob
from legacy.models import ImportRun
from scraping.models import ScrapeJob
from training.models import (
    DatasetBuild,
    DatasetExport,
    DatasetVersion,
    GenerationJob,
    SetRun,
    SetTemplate,
    TrainingRun,
)

S = BaseRun.Status


def _dataset() -> DatasetVersion:
    sha = f"{DatasetVersion.objects.count():064d}"
    return DatasetVersion.objects.create(name="d", manifest={}, manifest_sha256=sha)


# One row of every kind, as little as each needs.
MAKERS = {
    UploadRun: lambda: UploadRun(album=make_album()),
    LabelingJob: lambda: LabelingJob(model_name="m", prompt_version="v"),
    ScrapeJob: lambda: ScrapeJob(start_url="https://example.org/", album_name="a"),
    TrainingRun: lambda: TrainingRun(name="r", dataset=_dataset(), base_model="b"),
    GenerationJob: lambda: GenerationJob(prompt="p", base_model="b", seed=1),
    DatasetBuild: lambda: DatasetBuild(album_ids=[]),
    DatasetExport: lambda: DatasetExport(dataset=_dataset(), layout="flat"),
    ImportRun: lambda: ImportRun(sources=[]),
    SetRun: lambda: SetRun(template=SetTemplate.objects.get(slug="zodiac"), set_seed=1),
    MaintenanceRun: lambda: MaintenanceRun(task="disk-usage"),
}
KINDS = list(MAKERS)


def make_run(model: type[BaseRun], **fields: Any) -> BaseRun:
    run = MAKERS[model]()
    for name, value in fields.items():
        setattr(run, name, value)
    run.save()
    return run


def stale(settings: Any) -> Any:
    return timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS + 60)


def test_every_run_model_is_covered_here() -> None:
    assert set(run_models()) == set(KINDS)


@pytest.mark.django_db
@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("ended", [S.FAILED, S.CANCELLED])
def test_retry_queues_the_same_row_again_for_every_kind(
    model: type[BaseRun], ended: str, django_capture_on_commit_callbacks: Any
) -> None:
    run = make_run(
        model,
        status=ended,
        attempts=3,
        error="boom",
        cancel_requested=ended == S.CANCELLED,
        finished_at=timezone.now(),
        progress_done=2,
    )
    with django_capture_on_commit_callbacks() as enqueued:
        run_retry(run)
    run.refresh_from_db()
    assert (run.status, run.attempts, run.error, run.cancel_requested) == (
        S.QUEUED,
        0,
        "",
        False,
    )
    assert run.finished_at is None
    assert run.progress_done == 2  # what it did is kept: it resumes from there
    assert run.message == run.resume_note
    assert len(enqueued) == 1  # handed to its worker once the retry commits
    assert model.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("state", [S.QUEUED, S.RUNNING, S.SUCCEEDED])
def test_retry_refuses_a_run_that_has_not_failed_or_been_cancelled(
    model: type[BaseRun], state: str
) -> None:
    run = make_run(model, status=state)
    with pytest.raises(RunNotRetryable) as refused:
        run_retry(run)
    assert refused.value.status == 409
    run.refresh_from_db()
    assert run.status == state


@pytest.mark.django_db
@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.__name__)
def test_the_reaper_requeues_a_dead_run_of_every_kind_through_retry(
    model: type[BaseRun], settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    run = make_run(model, status=S.RUNNING, attempts=1, heartbeat_at=stale(settings))
    with django_capture_on_commit_callbacks() as enqueued:
        counts = reap_stale_runs()
    run.refresh_from_db()
    assert counts == {"requeued": 1, "cancelled": 0, "failed": 0}
    assert (run.status, run.attempts) == (S.QUEUED, 1)  # attempts keep counting
    assert "stopped responding" in run.message
    assert len(enqueued) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.__name__)
def test_a_dead_run_whose_cancel_was_asked_for_ends_cancelled(
    model: type[BaseRun], settings: Any
) -> None:
    run = make_run(
        model,
        status=S.RUNNING,
        attempts=1,
        cancel_requested=True,
        heartbeat_at=stale(settings),
    )
    assert reap_stale_runs() == {"requeued": 0, "cancelled": 1, "failed": 0}
    run.refresh_from_db()
    assert (run.status, run.error) == (S.CANCELLED, "")
    assert run.finished_at is not None
    assert "stopped responding" in run.message


@pytest.mark.django_db
def test_a_run_that_kills_its_worker_every_time_fails_in_the_end(settings) -> None:
    run = make_run(
        UploadRun, status=S.RUNNING, attempts=3, heartbeat_at=stale(settings)
    )
    assert reap_stale_runs() == {"requeued": 0, "cancelled": 0, "failed": 1}
    run.refresh_from_db()
    assert run.status == S.FAILED and "stopped responding" in run.error


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_keeps_a_long_step_alive_past_the_stale_limit(settings) -> None:
    settings.RUN_STALE_AFTER_SECONDS = 1
    settings.RUN_HEARTBEAT_SECONDS = 0.1
    run = make_run(UploadRun)
    reaped: list[dict[str, int]] = []

    def long_step_without_checkpoints(current: UploadRun) -> str:
        time.sleep(1.6)  # past the stale limit, with no checkpoint
        reaped.append(reap_stale_runs())
        return "done"

    run_execute(UploadRun, run.pk, long_step_without_checkpoints)
    run.refresh_from_db()
    assert reaped == [{"requeued": 0, "cancelled": 0, "failed": 0}]
    assert (run.status, run.attempts) == (S.SUCCEEDED, 1)


@pytest.mark.django_db(transaction=True)
def test_without_the_heartbeat_the_same_step_would_be_reaped(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control for the test above: the same silent step, with the
    heartbeat thread switched off, looks like a dead worker to the reaper."""
    settings.RUN_STALE_AFTER_SECONDS = 1
    monkeypatch.setattr(runs, "run_heartbeat", lambda run: contextlib.nullcontext())
    run = make_run(UploadRun)
    reaped: list[dict[str, int]] = []

    def long_step_without_checkpoints(current: UploadRun) -> str:
        time.sleep(1.6)
        reaped.append(reap_stale_runs())
        return "done"

    run_execute(UploadRun, run.pk, long_step_without_checkpoints)
    assert reaped == [{"requeued": 1, "cancelled": 0, "failed": 0}]


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_stops_with_the_body(settings) -> None:
    settings.RUN_HEARTBEAT_SECONDS = 0.05
    run = make_run(UploadRun, status=S.RUNNING, heartbeat_at=timezone.now())
    before = set(threading.enumerate())
    with run_heartbeat(run):
        time.sleep(0.2)
    assert set(threading.enumerate()) <= before


# --- clean-up when a run ends -----------------------------------------------------


def _staged(settings: Any) -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT, "staging").rglob("*") if p.is_file()]


@pytest.mark.django_db
def test_a_failed_upload_removes_its_staged_files(settings, monkeypatch) -> None:
    files = [SimpleUploadedFile("a.jpg", make_image_bytes(seed=1))]
    run = upload_run_create(files=files, album=make_album())
    assert _staged(settings)

    def storage_down(current: UploadRun) -> str:
        raise OSError("storage is down")

    run_execute(UploadRun, run.pk, storage_down)
    run.refresh_from_db()
    assert run.status == S.FAILED
    assert _staged(settings) == []
    # Its files are gone, so a retry says why instead of failing again.
    with pytest.raises(RunNotRetryable, match="upload them again"):
        run_retry(run)


@pytest.mark.django_db
def test_cancelling_a_queued_upload_removes_its_staged_files(settings) -> None:
    from imagineer_project.runs import run_request_cancel

    files = [SimpleUploadedFile("a.jpg", make_image_bytes(seed=2))]
    run = upload_run_create(files=files, album=make_album())
    assert run_request_cancel(run)
    assert run.status == S.CANCELLED
    assert _staged(settings) == []


# --- the shared API endpoints -------------------------------------------------------

LOCATIONS = {
    UploadRun: "/api/uploads",
    LabelingJob: "/api/labeling-jobs",
    ScrapeJob: "/api/scrape-jobs",
    TrainingRun: "/api/training/runs",
    GenerationJob: "/api/generation-jobs",
    DatasetExport: "/api/training/dataset-exports",
    ImportRun: "/api/admin/legacy-imports",
    SetRun: "/api/set-runs",
}


@pytest.mark.django_db
@pytest.mark.parametrize("model", list(LOCATIONS), ids=lambda m: m.__name__)
def test_every_run_api_lists_shows_cancels_and_retries(
    model: type[BaseRun], call_as: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client, base = call_as("token"), LOCATIONS[model]
    running = make_run(model, status=S.RUNNING)
    failed = make_run(model, status=S.FAILED, error="boom")

    listed = client.get(f"{base}?status=failed").json()["items"]
    assert [item["id"] for item in listed] == [failed.pk]
    assert client.get(f"{base}/{running.pk}").json()["status"] == "running"
    assert client.get(f"{base}/999999").status_code == 404

    cancelled = client.post(f"{base}/{running.pk}/cancel")
    assert cancelled.status_code == 200
    running.refresh_from_db()
    assert running.cancel_requested  # seen at its next checkpoint
    again = client.post(f"{base}/{running.pk}/retry")
    assert again.status_code == 409
    assert again.json()["error_code"] == "run_not_retryable"

    with django_capture_on_commit_callbacks():
        retried = client.post(f"{base}/{failed.pk}/retry")
    assert retried.status_code == 202
    assert retried["Location"] == f"{base}/{failed.pk}"
    assert retried.json()["status"] == "queued"
    ended = client.post(f"{base}/{failed.pk}/cancel")  # queued: cancelled at once
    assert ended.json()["status"] == "cancelled"
    assert client.post(f"{base}/{failed.pk}/cancel").status_code == 409


@pytest.mark.django_db
def test_run_apis_are_staff_only(call_as: Any) -> None:
    for base in LOCATIONS.values():
        assert call_as("anonymous").get(base).status_code == 401
        assert call_as("user").get(base).status_code == 403
