"""django-q2 entry point for set runs (thin: take the id, run the body)."""

from __future__ import annotations

from imagineer_project.runs import run_execute
from training.models import SetRun
from training.sets.runs import set_run_execute


def run_set(run_id: int) -> str | None:
    """Render a set run on the gpu worker. Safe to deliver twice: the claim
    runs it once, and a later attempt renders only the slots not yet tried."""
    run = run_execute(SetRun, run_id, set_run_execute)
    return run.status if run else None
