"""The shared run state machine, exercised through the bulk-upload run."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from albums.models import Image, UploadFile, UploadRun
from albums.selectors import upload_run_results
from albums.services import upload_run_create
from albums.tasks import process_upload_run
from albums.tests.builders import make_album
from imagineer_project.runs import (
    BaseRun,
    RunCancelled,
    reap_stale_runs,
    run_checkpoint,
    run_claim,
    run_execute,
    run_request_cancel,
)
from imagineer_project.testing import make_image_bytes

pytestmark = pytest.mark.django_db
S = BaseRun.Status


def queued_run(**fields) -> UploadRun:
    return UploadRun.objects.create(album=make_album(), **fields)


def test_a_run_is_claimed_once() -> None:
    run = queued_run()
    assert run_claim(UploadRun, run.pk) is not None
    assert run_claim(UploadRun, run.pk) is None  # a second delivery backs off
    run.refresh_from_db()
    assert (run.status, run.attempts) == (S.RUNNING, 1)


def test_execute_records_success_failure_and_cancel() -> None:
    ok, bad, stop = queued_run(), queued_run(), queued_run()

    run_execute(UploadRun, ok.pk, lambda r: "all good")
    run_execute(UploadRun, bad.pk, lambda r: 1 / 0)

    def cancelled_midway(run: UploadRun) -> str:
        UploadRun.objects.filter(pk=run.pk).update(cancel_requested=True)
        run_checkpoint(run, done=1, total=2)
        return "unreachable"

    run_execute(UploadRun, stop.pk, cancelled_midway)
    for run in (ok, bad, stop):
        run.refresh_from_db()
    assert (ok.status, ok.message, ok.finished_at is not None) == (
        S.SUCCEEDED,
        "all good",
        True,
    )
    assert (bad.status, bad.error) == (S.FAILED, "ZeroDivisionError: division by zero")
    assert (stop.status, stop.progress_done) == (S.CANCELLED, 1)


def test_cancelling_a_queued_run_stops_it_before_it_starts() -> None:
    run = queued_run()
    assert run_request_cancel(run)
    assert run.status == S.CANCELLED
    assert run_execute(UploadRun, run.pk, lambda r: "ran") is None
    # Asking again is refused: it has ended (cancelled), nothing changes.
    assert run_request_cancel(run) is False


def test_cancelling_a_finished_run_is_refused() -> None:
    run = queued_run(status=S.SUCCEEDED)
    assert run_request_cancel(run) is False


def test_checkpoint_refreshes_heartbeat_and_raises_on_cancel() -> None:
    run = run_claim(UploadRun, queued_run().pk)
    UploadRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    run_checkpoint(run, done=3, total=10, message="working")
    run.refresh_from_db()
    assert timezone.now() - run.heartbeat_at < timedelta(seconds=5)
    assert (run.progress_done, run.progress_total, run.percent) == (3, 10, 30)
    UploadRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    with pytest.raises(RunCancelled):
        run_checkpoint(run)


def test_reaper_requeues_a_dead_run_then_fails_it_when_attempts_run_out(
    settings,
) -> None:
    long_ago = timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS + 60)
    retry = queued_run(status=S.RUNNING, attempts=1, heartbeat_at=long_ago)
    give_up = queued_run(status=S.RUNNING, attempts=3, heartbeat_at=long_ago)
    fresh = queued_run(status=S.RUNNING, attempts=1, heartbeat_at=timezone.now())

    assert reap_stale_runs() == {"requeued": 1, "cancelled": 0, "failed": 1}
    for run in (retry, give_up, fresh):
        run.refresh_from_db()
    assert retry.status == S.QUEUED
    assert (give_up.status, "stopped responding" in give_up.error) == (S.FAILED, True)
    assert fresh.status == S.RUNNING


def test_a_stale_running_run_can_be_taken_over_by_a_redelivered_task(settings) -> None:
    long_ago = timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS + 60)
    run = queued_run(status=S.RUNNING, attempts=1, heartbeat_at=long_ago)
    claimed = run_claim(UploadRun, run.pk)
    assert claimed is not None and claimed.attempts == 2


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_bulk_upload_runs_twice_without_duplicating_anything(
    settings, django_capture_on_commit_callbacks
) -> None:
    album = make_album()
    files = [
        SimpleUploadedFile("one.jpg", make_image_bytes(seed=1)),
        SimpleUploadedFile(
            "set.zip",
            _zip(
                {
                    "deck/two.png": make_image_bytes("PNG", seed=2),
                    "deck/three.gif": make_image_bytes("GIF", seed=3),
                    "deck/readme.txt": b"not an image",
                    "__MACOSX/._two.png": b"junk",
                }
            ),
        ),
        SimpleUploadedFile("broken.jpg", make_image_bytes(seed=4)[:200]),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        run = upload_run_create(files=files, album=album)
    run.refresh_from_db()
    assert (run.status, run.progress_done, run.progress_total) == (S.SUCCEEDED, 6, 6)
    assert (run.created_count, run.duplicate_count, run.rejected_count) == (3, 0, 3)
    # Every file gets a verdict, the archive's readme and resource fork too.
    results = upload_run_results(run)
    assert [(r["status"], r.get("code")) for r in results] == [
        ("created", None),
        ("created", None),
        ("created", None),
        ("rejected", "unsupported"),
        ("rejected", "hidden"),
        ("rejected", "corrupt"),
    ]
    assert not list(Path(settings.MEDIA_ROOT, "staging").rglob("*.*"))

    # At-least-once delivery: a second run of the same task changes nothing.
    process_upload_run(run.pk)
    assert Image.objects.count() == 3
    assert album.memberships.count() == 3


def test_bulk_upload_resumes_after_a_crash_without_redoing_entries(
    django_capture_on_commit_callbacks,
) -> None:
    album = make_album()
    files = [
        SimpleUploadedFile(f"{n}.jpg", make_image_bytes(seed=20 + n)) for n in range(3)
    ]
    run = upload_run_create(files=files, album=album)  # not executed: no on_commit run
    # Simulate a worker that died after the first entry.
    UploadRun.objects.filter(pk=run.pk).update(
        status=S.RUNNING,
        attempts=1,
        heartbeat_at=timezone.now() - timedelta(days=1),
    )
    UploadFile.objects.create(run=run, position=0, filename="0.jpg", status="created")
    process_upload_run(run.pk)
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED
    results = upload_run_results(run)
    assert [r["filename"] for r in results] == ["0.jpg", "1.jpg", "2.jpg"]
    assert "image_id" not in results[0]  # kept, not recomputed
    assert (run.progress_done, run.created_count) == (3, 3)
    assert album.memberships.count() == 2


def test_the_reaper_is_scheduled_after_migrate() -> None:
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="reap-stale-runs")
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == (
        "imagineer_project.tasks.reap_stale_runs",
        Schedule.MINUTES,
        -1,
    )
