"""One upload run spread over chunk sub-tasks: every file recorded once, in
any order and delivered twice, with exact progress and counts, and a cancel
that stops it."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from albums import runs, tasks
from albums.models import Image, UploadFile, UploadRun
from albums.selectors import upload_run_results
from albums.services import upload_run_create
from albums.tasks import ingest_upload_chunk
from albums.tests.builders import make_album
from imagineer_project.runs import run_chunks, run_claim
from imagineer_project.testing import make_image_bytes

pytestmark = pytest.mark.django_db

FILES = 9


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nine files make several chunks and several row batches per chunk.
    monkeypatch.setattr(runs, "CHUNK_MIN_FILES", 2)
    monkeypatch.setattr(runs, "ROW_BATCH", 2)


def make_run(django_capture_on_commit_callbacks: Any, *, execute: bool) -> UploadRun:
    files = [
        SimpleUploadedFile(f"{n}.png", make_image_bytes("PNG", seed=300 + n))
        for n in range(FILES - 1)
    ] + [SimpleUploadedFile("notes.bin", b"not an image")]
    with django_capture_on_commit_callbacks(execute=execute):
        run = upload_run_create(files=files, album=make_album(), near_duplicates="keep")
    run.refresh_from_db()
    return run


def test_a_big_run_goes_through_chunk_subtasks_and_records_each_file_once(
    django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivered: list[tuple[int, int]] = []

    def counted(run_id: int, start: int, stop: int) -> str:
        delivered.append((start, stop))
        return runs.upload_chunk_execute(run_id, start, stop)

    monkeypatch.setattr(tasks, "ingest_upload_chunk", counted)
    # Q_SYNC: the chunk sub-tasks run inline as the run queues them.
    run = make_run(django_capture_on_commit_callbacks, execute=True)
    assert (
        delivered == run_chunks(FILES, min_size=runs.CHUNK_MIN_FILES)
        and len(delivered) > 2
    )
    assert run.status == UploadRun.Status.SUCCEEDED
    assert run.message == "8 created, 0 duplicate, 1 rejected"
    assert (run.progress_done, run.progress_total) == (FILES, FILES)
    assert (run.created_count, run.duplicate_count, run.rejected_count) == (8, 0, 1)
    results = upload_run_results(run)
    assert [r["filename"] for r in results] == [
        *(f"{n}.png" for n in range(FILES - 1)),
        "notes.bin",
    ]
    assert [r["status"] for r in results] == ["created"] * 8 + ["rejected"]
    assert Image.objects.count() == 8
    assert run.album.memberships.count() == 8


def test_chunks_in_any_order_and_twice_record_every_file_once(
    django_capture_on_commit_callbacks: Any,
) -> None:
    run = make_run(django_capture_on_commit_callbacks, execute=False)
    run = run_claim(UploadRun, run.pk)
    chunks = run_chunks(FILES, min_size=runs.CHUNK_MIN_FILES)
    assert len(chunks) > 2
    for start, stop in [*reversed(chunks), *chunks]:  # backwards, then again
        ingest_upload_chunk(run.pk, start, stop)
    run.refresh_from_db()
    assert run.status == UploadRun.Status.SUCCEEDED
    positions = list(UploadFile.objects.filter(run=run).values_list("position"))
    assert positions == [(n,) for n in range(FILES)]
    assert (run.progress_done, run.created_count, run.rejected_count) == (FILES, 8, 1)
    assert Image.objects.count() == 8


def test_a_chunk_left_half_done_is_finished_by_the_next_delivery(
    django_capture_on_commit_callbacks: Any,
) -> None:
    run = make_run(django_capture_on_commit_callbacks, execute=False)
    run = run_claim(UploadRun, run.pk)
    chunks = run_chunks(FILES, min_size=runs.CHUNK_MIN_FILES)
    start, stop = chunks[0]
    UploadFile.objects.create(  # the first file made it before a crash
        run=run, position=start, filename="0.png", status="rejected", code="x"
    )
    UploadRun.objects.filter(pk=run.pk).update(progress_done=1, rejected_count=1)
    for a, b in chunks:
        ingest_upload_chunk(run.pk, a, b)
    run.refresh_from_db()
    assert run.status == UploadRun.Status.SUCCEEDED
    assert upload_run_results(run)[0]["code"] == "x"  # not ingested again
    assert (run.progress_done, run.created_count, run.rejected_count) == (FILES, 7, 2)


def test_cancel_stops_the_chunks_at_their_next_batch(
    django_capture_on_commit_callbacks: Any,
) -> None:
    run = make_run(django_capture_on_commit_callbacks, execute=False)
    run = run_claim(UploadRun, run.pk)
    UploadRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    start, stop = run_chunks(FILES, min_size=runs.CHUNK_MIN_FILES)[0]
    assert ingest_upload_chunk(run.pk, start, stop) == "cancelled"
    run.refresh_from_db()
    assert run.status == UploadRun.Status.CANCELLED
    assert run.files.count() == runs.ROW_BATCH  # the batch in hand, no more
    assert run.progress_done == runs.ROW_BATCH
    # The other chunks find the run no longer running and ingest nothing.
    for a, b in run_chunks(FILES, min_size=runs.CHUNK_MIN_FILES)[1:]:
        assert ingest_upload_chunk(run.pk, a, b) == "not running"
    assert run.files.count() == runs.ROW_BATCH
