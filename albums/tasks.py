"""django-q2 entry points for the albums app (thin: take the id, run the body)."""

from __future__ import annotations

from albums.models import UploadRun
from albums.runs import upload_run_execute
from imagineer_project.runs import run_execute


def process_upload_run(run_id: int) -> str | None:
    """Ingest the files of a bulk upload or a folder import; safe to deliver
    twice (the claim runs it once; a later attempt resumes at its next file)."""
    run = run_execute(UploadRun, run_id, upload_run_execute)
    return run.status if run else None
