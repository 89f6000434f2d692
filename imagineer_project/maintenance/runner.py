"""Every maintenance pass runs as a MaintenanceRun on the one run machine.

- `maintenance_run_start`: record the run and hand it to the worker (the
  admin's "Run maintenance").
- `maintenance_run_now`: record it and execute it in this process (a
  scheduled django-q task is already in a worker; commands run in the
  foreground through imagineer_project.cli instead, with a progress bar).

One pass of a task at a time: a run of a task that already has a queued or
running run is refused with Conflict (the scheduler logs it and skips that
turn). Two callers starting the same task in the same instant could both pass
the check; passes are idempotent (they remove what is due, and deleting a
file twice is harmless), so that rare race costs a duplicate run, not harm.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.template.defaultfilters import filesizeformat

from imagineer_project.errors import Conflict, Invalid
from imagineer_project.maintenance.registry import PASSES, PassReport
from imagineer_project.models import MaintenanceRun
from imagineer_project.runs import BaseRun, run_checkpoint, run_enqueue, run_execute

logger = logging.getLogger(__name__)


def maintenance_task_names() -> list[str]:
    """The registered passes, in a stable order (for lists and errors)."""
    return sorted(PASSES)


def maintenance_run_create(
    *,
    task: str,
    dry_run: bool,
    trigger: str,
    options: dict[str, Any] | None = None,
) -> MaintenanceRun:
    """Record a queued run of `task`. Raises Invalid for an unknown task and
    Conflict while another run of it is queued or running."""
    if task not in PASSES:
        known = ", ".join(maintenance_task_names())
        raise Invalid(
            f"No maintenance task {task!r}; the tasks are: {known}.",
            errors={"task": "unknown"},
        )
    active = (
        MaintenanceRun.objects.filter(task=task, status__in=BaseRun.ACTIVE)
        .order_by("pk")
        .first()
    )
    if active is not None:
        raise Conflict(f"{task} is already {active.status} (run #{active.pk}).")
    return MaintenanceRun.objects.create(
        task=task,
        dry_run=dry_run,
        trigger=trigger,
        # A queued run keeps its options until the worker reads them.
        report={"options": options} if options else {},
        message="Waiting for the worker",
    )


def maintenance_run_start(
    *,
    task: str,
    dry_run: bool,
    trigger: str,
    options: dict[str, Any] | None = None,
) -> MaintenanceRun:
    """Record a run of `task` and queue it for the worker."""
    with transaction.atomic():
        run = maintenance_run_create(
            task=task, dry_run=dry_run, trigger=trigger, options=options
        )
        run_enqueue(run)
    return run


def maintenance_run_now(
    *,
    task: str,
    dry_run: bool,
    trigger: str,
    options: dict[str, Any] | None = None,
) -> MaintenanceRun:
    """Record a run of `task` and execute it here; returns it as it ended."""
    run = maintenance_run_create(
        task=task, dry_run=dry_run, trigger=trigger, options=options
    )
    run_execute(MaintenanceRun, run.pk, maintenance_run_body)
    run.refresh_from_db()
    return run


def maintenance_run_body(run: MaintenanceRun) -> str:
    """The run machine's body: call the pass with a report whose progress is
    the run's checkpoint (so a cancel stops it), and record what it did."""
    options = dict((run.report or {}).get("options") or {})

    def checkpoint(done: int, total: int, message: str) -> None:
        run_checkpoint(run, done=done, total=total, message=message)

    report = PassReport(dry_run=run.dry_run, on_progress=checkpoint, options=options)
    try:
        PASSES[run.task].func(report)
    finally:
        # Kept however the pass ended: a pass cancelled or failed halfway has
        # still removed what it listed so far.
        MaintenanceRun.objects.filter(pk=run.pk).update(
            report={**report.as_dict(), "options": options},
            items_removed=report.items_removed,
            bytes_freed=report.bytes_freed,
        )
    return maintenance_summary(report)


def maintenance_summary(report: PassReport) -> str:
    """One line: "Removed 12 files (3.4 MB)", "Would remove 2 work dirs (1.0
    GB) (dry run)", "Nothing to remove", and the problems found."""
    if report.items_removed:
        kinds = ", ".join(_counted(n, what) for what, n in report.kinds.items())
        size = f" ({_size(report.bytes_freed)})" if report.bytes_freed else ""
        verb = "Would remove" if report.dry_run else "Removed"
        text = f"{verb} {kinds}{size}"
    else:
        text = "Nothing to remove"
    if report.dry_run:
        text += " (dry run)"
    if report.problem_count:
        text += f"; {_counted(report.problem_count, 'problem')} to look at"
    return text


def _counted(n: int, what: str) -> str:
    plural = what if n == 1 or what.endswith("s") else f"{what}s"
    return f"{n} {plural}"


def _size(n: int) -> str:
    # filesizeformat joins number and unit with a no-break space.
    return str(filesizeformat(n)).replace("\xa0", " ")


def maintenance_run_lines(run: MaintenanceRun, *, limit: int = 20) -> list[str]:
    """A run as a person reads it: its outcome, then what it removed (or
    would), the problems it found, and its figures; the first `limit` of each
    list, with a count of the rest."""
    report = run.report or {}
    outcome = run.message if run.status == BaseRun.Status.SUCCEEDED else run.error
    lines = [f"{run.task} #{run.pk} {run.status}: {outcome or run.message}"]
    verb = "would remove" if run.dry_run else "removed"
    removed = report.get("removed", [])
    for item in removed[:limit]:
        size = f" ({_size(item['size'])})" if item.get("size") else ""
        count = f" x{item['count']}" if item.get("count", 1) != 1 else ""
        lines.append(f"  {verb} {item['what']}{count}: {item['name']}{size}")
    shown = sum(item.get("count", 1) for item in removed[:limit])
    lines += _more(report.get("items_removed", 0), shown, verb)
    problems = report.get("problems", [])
    lines += [f"  problem: {text}" for text in problems[:limit]]
    lines += _more(report.get("problem_count", 0), min(len(problems), limit), "found")
    for name, value in (report.get("facts") or {}).items():
        if name != "prefixes":
            lines += _fact_lines(name, value, "  ")
    return lines


def _fact_lines(name: str, value: Any, indent: str) -> list[str]:
    """A figure as lines: nested ones (disk-usage's roles) one level deeper."""
    if isinstance(value, dict) and value:
        lines = [f"{indent}{name}:"]
        for key, inner in value.items():
            lines += _fact_lines(str(key), inner, indent + "  ")
        return lines
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        lines = [f"{indent}{name}:"]
        for inner in value:
            lines.append(
                f"{indent}  - " + ", ".join(f"{k} {v}" for k, v in inner.items())
            )
        return lines
    return [f"{indent}{name}: {value}"]


def _more(total: int, shown: int, verb: str) -> list[str]:
    return [f"  ... and {total - shown} more {verb}"] if total > shown else []
