"""Run maintenance passes now, in the foreground: `manage.py maintenance
[TASK ...] [--dry-run]` (no TASK: every pass)."""

from __future__ import annotations

from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagineer_project.cli import run_in_foreground
from imagineer_project.errors import Conflict
from imagineer_project.maintenance.runner import (
    maintenance_run_body,
    maintenance_run_create,
    maintenance_run_lines,
    maintenance_task_names,
)
from imagineer_project.models import MaintenanceRun


def run_pass(
    command: BaseCommand,
    task: str,
    *,
    dry_run: bool,
    options: dict[str, Any] | None = None,
    quiet: bool = False,
) -> bool:
    """Run one pass with a progress line and print its report; False when it
    did not succeed (a run of it already active is skipped, not a failure)."""
    try:
        run = maintenance_run_create(
            task=task,
            dry_run=dry_run,
            trigger=MaintenanceRun.Trigger.COMMAND,
            options=options,
        )
    except Conflict as exc:
        command.stdout.write(f"{task}: skipped: {exc.message}")
        return True
    stream: TextIO = command.stderr._out  # type: ignore[attr-defined]
    run = run_in_foreground(
        run, maintenance_run_body, stream=stream, unit="step", quiet=quiet
    )
    for line in maintenance_run_lines(run):
        command.stdout.write(line)
    return run.status == MaintenanceRun.Status.SUCCEEDED


class Command(BaseCommand):
    help = "Run maintenance passes now (all of them when none is named)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tasks", nargs="*", metavar="TASK")
        parser.add_argument(
            "--dry-run", action="store_true", help="report only; remove nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        known = maintenance_task_names()
        tasks = options["tasks"] or known
        unknown = [task for task in tasks if task not in known]
        if unknown:
            raise CommandError(
                f"No maintenance task {', '.join(unknown)}; "
                f"the tasks are: {', '.join(known)}."
            )
        failed = [
            task
            for task in tasks
            if not run_pass(
                self,
                task,
                dry_run=options["dry_run"],
                quiet=options["verbosity"] < 1,
            )
        ]
        if failed:
            raise CommandError(f"Did not succeed: {', '.join(failed)}.")
