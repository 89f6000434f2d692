"""django-q2 entry points for labeling (thin: fetch by id, run the job)."""

from __future__ import annotations

from imagineer_project.runs import run_execute
from labeling.jobs import labeling_job_run
from labeling.models import LabelingJob


def run_labeling_job(job_id: int) -> str | None:
    """Label the job's images with Claude; safe to deliver twice."""
    job = run_execute(LabelingJob, job_id, labeling_job_run)
    return job.status if job else None
