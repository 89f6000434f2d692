"""django-q2 entry points for legacy imports (thin: take the id, run the body)."""

from __future__ import annotations

from imagineer_project.runs import run_execute
from legacy.models import ImportRun
from legacy.runs import legacy_chunk_execute, legacy_import_spread


def run_legacy_import(run_id: int) -> str | None:
    """Import the run's folders; safe to deliver twice (the claim runs it once;
    a later attempt goes on at the first file it has not recorded). A big
    import hands its files to import_legacy_chunk sub-tasks."""
    run = run_execute(ImportRun, run_id, legacy_import_spread)
    return run.status if run else None


def import_legacy_chunk(run_id: int, start: int, stop: int) -> str:
    """Import files start..stop-1 of a running import; safe to deliver twice
    (each file is finished once, by its item)."""
    return legacy_chunk_execute(run_id, start, stop)
