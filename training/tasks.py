"""django-q2 entry points for training (thin: fetch by id, run the body)."""

from __future__ import annotations

from imagineer_project.runs import run_execute
from training.models import TrainingRun
from training.runs import training_run_execute


def run_training(run_id: int) -> str | None:
    """Train the run's LoRA on the gpu worker; safe to deliver twice (the claim
    runs it once, and an attempt after a crash resumes from its checkpoint)."""
    run = run_execute(TrainingRun, run_id, training_run_execute)
    return run.status if run else None
