"""django-q2 entry points for the albums app (thin: take the id, run the body)."""

from __future__ import annotations

from albums.models import UploadRun
from albums.runs import upload_chunk_execute, upload_run_spread
from imagineer_project.runs import run_execute


def process_upload_run(run_id: int) -> str | None:
    """Ingest the files of a bulk upload or a folder import; safe to deliver
    twice (the claim runs it once; a later attempt resumes at its next file).
    A big run hands its files to ingest_upload_chunk sub-tasks."""
    run = run_execute(UploadRun, run_id, upload_run_spread)
    return run.status if run else None


def ingest_upload_chunk(run_id: int, start: int, stop: int) -> str:
    """Ingest files start..stop-1 of a running upload run; safe to deliver
    twice (each file is recorded once, by its position)."""
    return upload_chunk_execute(run_id, start, stop)
