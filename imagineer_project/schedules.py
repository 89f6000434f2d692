"""Periodic work, registered in django-q2's scheduler after each migrate.

The run reaper is the project's own; apps add theirs from their
AppConfig.ready() (`schedule_every`), so this module names no app above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scheduled:
    name: str
    func: str  # dotted path of a django-q2 task
    minutes: int


SCHEDULES: dict[str, Scheduled] = {}


def schedule_every(minutes: int, name: str, func: str) -> None:
    """Run `func` every `minutes` (from the next migrate on)."""
    SCHEDULES[name] = Scheduled(name, func, minutes)


schedule_every(2, "reap-stale-runs", "imagineer_project.tasks.reap_stale_runs")


def ensure_schedules(**kwargs: Any) -> None:
    from django_q.models import Schedule

    for entry in SCHEDULES.values():
        Schedule.objects.update_or_create(
            name=entry.name,
            defaults={
                "func": entry.func,
                "schedule_type": Schedule.MINUTES,
                "minutes": entry.minutes,
                "repeats": -1,
            },
        )
