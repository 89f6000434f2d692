"""django-q2 entry points for the albums app (thin: fetch by id, call a service)."""

from __future__ import annotations

from albums.models import UploadRun
from albums.runs import upload_run_execute
from albums.services import upload_run_discard
from imagineer_project.runs import BaseRun, run_execute


def process_upload_run(run_id: int) -> str | None:
    """Ingest the files of a bulk upload; safe to deliver twice."""
    run = run_execute(UploadRun, run_id, upload_run_execute)
    if run is not None and run.status == BaseRun.Status.CANCELLED:
        upload_run_discard(run)
    return run.status if run else None
