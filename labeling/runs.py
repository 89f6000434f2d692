"""The body of a labeling job: direct requests (labeling.runner.JobRunner) or
Message Batches (labeling.batches.BatchRunner), by the job's `use_batch`; and
the poller that finishes batch jobs once the API has answered."""

from __future__ import annotations

import logging
from collections.abc import Callable

from imagineer_project.runs import run_body, run_poll_claim, waiting_runs
from labeling import claude
from labeling.batches import BatchRunner
from labeling.models import LabelingJob
from labeling.runner import JobRunner, Plan

logger = logging.getLogger(__name__)


def labeling_job_execute(
    job: LabelingJob, on_progress: Callable[[LabelingJob], None] | None = None
) -> str:
    """The body of a labeling job (see run_execute); returns its final message.
    A batch job raises RunWaiting once its batches are sent: the worker is
    free, and labeling_batches_poll finishes the job."""
    runner = BatchRunner if job.use_batch else JobRunner
    return runner(job, claude.make_client(), on_progress).run()


def labeling_batches_poll() -> dict[str, int]:
    """Scheduled: poll every waiting batch job once; record what has ended and
    finish the jobs whose batches have all ended (or that were cancelled).
    Each job is taken by one poller at a time (runs.run_poll_claim)."""
    counts = {"succeeded": 0, "waiting": 0, "cancelled": 0, "failed": 0}
    for job in waiting_runs(LabelingJob).filter(use_batch=True).order_by("id"):
        if run_poll_claim(job):
            counts[labeling_batch_poll(job)] += 1
    if counts["succeeded"] or counts["failed"] or counts["cancelled"]:
        logger.info("Message batch polls: %s", counts)
    return counts


def labeling_batch_poll(job: LabelingJob) -> str:
    """One poll of one waiting batch job; returns how the job stands after it.
    No new plan: what is left is in the job's batches and progress."""
    plan = Plan(todo=[], total=job.progress_total, done=job.progress_done)
    runner = BatchRunner(job, claude.make_client(), plan=plan)
    return run_body(job, lambda job: runner.poll())
