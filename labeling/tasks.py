"""django-q2 entry points for labeling (thin: fetch by id, run the job)."""

from __future__ import annotations

from imagineer_project.runs import run_execute
from labeling.models import LabelingJob
from labeling.runs import labeling_batches_poll, labeling_job_execute


def run_labeling_job(job_id: int) -> str | None:
    """Label the job's images with Claude; safe to deliver twice."""
    job = run_execute(LabelingJob, job_id, labeling_job_execute)
    return job.status if job else None


def poll_message_batches() -> dict[str, int]:
    """Scheduled every minute: finish batch labeling jobs whose batches ended."""
    return labeling_batches_poll()
