"""django-q2 entry point for generation jobs (thin: take the id, run the body).

Lives beside training/tasks.py (training runs) so the two can change apart;
GenerationJob.task_path names it.
"""

from __future__ import annotations

from imagineer_project.runs import run_execute
from training.generation.runs import generation_job_execute
from training.models import GenerationJob


def run_generation(job_id: int) -> str | None:
    """Render a generation job on the gpu worker. Safe to deliver twice: the
    claim runs it once, and a later attempt renders only the missing images."""
    job = run_execute(GenerationJob, job_id, generation_job_execute)
    return job.status if job else None
