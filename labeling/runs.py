"""The body of a labeling job: direct requests (labeling.runner.JobRunner) or
Message Batches (labeling.batches.BatchRunner), by the job's `use_batch`."""

from __future__ import annotations

from collections.abc import Callable

from labeling import claude
from labeling.batches import BatchRunner
from labeling.models import LabelingJob
from labeling.runner import JobRunner


def labeling_job_execute(
    job: LabelingJob, on_progress: Callable[[LabelingJob], None] | None = None
) -> str:
    """The body of a labeling job (see run_execute); returns its final message."""
    runner = BatchRunner if job.use_batch else JobRunner
    return runner(job, claude.make_client(), on_progress).run()
