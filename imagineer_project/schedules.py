"""Periodic maintenance, registered in django-q2's scheduler after each migrate."""

from __future__ import annotations

from typing import Any

SCHEDULES = [
    {
        "name": "reap-stale-runs",
        "func": "imagineer_project.tasks.reap_stale_runs",
        "minutes": 2,
    },
]


def ensure_schedules(**kwargs: Any) -> None:
    from django_q.models import Schedule

    for entry in SCHEDULES:
        Schedule.objects.update_or_create(
            name=entry["name"],
            defaults={
                "func": entry["func"],
                "schedule_type": Schedule.MINUTES,
                "minutes": entry["minutes"],
                "repeats": -1,
            },
        )
