"""Periodic work, registered in django-q2's scheduler after each migrate.

The run reaper is the project's own; apps add theirs from their
AppConfig.ready() (`schedule_every`), and every maintenance pass registered
with imagineer_project.maintenance.registry gets a schedule of its own, named
as the pass. This module names no app above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scheduled:
    name: str
    func: str  # dotted path of a django-q2 task
    minutes: int
    args: tuple[Any, ...] = ()  # positional arguments of the task


SCHEDULES: dict[str, Scheduled] = {}


def schedule_every(
    minutes: int, name: str, func: str, *, args: tuple[Any, ...] = ()
) -> None:
    """Run `func(*args)` every `minutes` (from the next migrate on)."""
    SCHEDULES[name] = Scheduled(name, func, minutes, tuple(args))


schedule_every(2, "reap-stale-runs", "imagineer_project.tasks.reap_stale_runs")


def maintenance_schedules() -> list[Scheduled]:
    """One schedule per registered maintenance pass, named as the pass; it
    runs the pass with the dry-run setting of the moment it runs."""
    from imagineer_project.maintenance.registry import PASSES

    return [
        Scheduled(
            name,
            "imagineer_project.tasks.run_scheduled_maintenance",
            entry.minutes,
            (name,),
        )
        for name, entry in sorted(PASSES.items())
    ]


def ensure_schedules(**kwargs: Any) -> None:
    """post_migrate: create or update every schedule (idempotent)."""
    from django_q.models import Schedule

    for entry in [*SCHEDULES.values(), *maintenance_schedules()]:
        Schedule.objects.update_or_create(
            name=entry.name,
            defaults={
                "func": entry.func,
                # django-q2 evaluates this string as the task's positional args.
                "args": repr(entry.args) if entry.args else None,
                "schedule_type": Schedule.MINUTES,
                "minutes": entry.minutes,
                "repeats": -1,
            },
        )
