from __future__ import annotations

import logging

from django.conf import settings

from imagineer_project import runs
from imagineer_project.errors import Conflict

logger = logging.getLogger(__name__)


def reap_stale_runs() -> dict[str, int]:
    """Scheduled: fail or re-queue runs whose worker stopped sending heartbeats."""
    return runs.reap_stale_runs()


def run_maintenance(run_id: int) -> None:
    """Execute a queued MaintenanceRun (started from the admin)."""
    from imagineer_project.maintenance.runner import maintenance_run_body
    from imagineer_project.models import MaintenanceRun

    runs.run_execute(MaintenanceRun, run_id, maintenance_run_body)


def run_scheduled_maintenance(task: str) -> str:
    """Scheduled: one pass, here in the worker that took the schedule.

    MAINTENANCE_DRY_RUN is read now, not when the schedule was made, so
    switching it takes effect at the next turn without a migrate. A turn that
    finds the pass still running is skipped."""
    from imagineer_project.maintenance.runner import maintenance_run_now
    from imagineer_project.models import MaintenanceRun

    try:
        run = maintenance_run_now(
            task=task,
            dry_run=settings.MAINTENANCE_DRY_RUN,
            trigger=MaintenanceRun.Trigger.SCHEDULE,
        )
    except Conflict as exc:
        logger.info("Maintenance %s skipped: %s", task, exc.message)
        return f"Skipped: {exc.message}"
    return f"{run.task} #{run.pk} {run.status}: {run.message or run.error}"
