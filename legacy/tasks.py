"""django-q2 entry point for legacy imports (thin: take the id, run the body)."""

from __future__ import annotations

from imagineer_project.runs import run_execute
from legacy.models import ImportRun
from legacy.runs import legacy_import_execute


def run_legacy_import(run_id: int) -> str | None:
    """Import the run's folders; safe to deliver twice (the claim runs it once;
    a later attempt goes on at the first file it has not recorded)."""
    run = run_execute(ImportRun, run_id, legacy_import_execute)
    return run.status if run else None
