"""What legacy import adds to the admin home (Collect;
imagineer_project.workflow). Registered from LegacyConfig.ready()."""

from __future__ import annotations

from imagineer_project.workflow import Count, admin_url, register_counts, register_link
from legacy.models import ImportRun


def collect_counts() -> list[Count]:
    runs = ImportRun.objects.count()
    return [
        Count(
            "legacy imports",
            runs,
            admin_url("admin:legacy_importrun_changelist"),
            "legacy import",
        )
    ]


def register() -> None:
    register_counts(
        "collect", collect_counts, permission="legacy.view_importrun", order=30
    )
    register_link(
        "collect",
        "Legacy import",
        "admin:legacy_importrun_add",
        permission="legacy.add_importrun",
        order=30,
    )
