from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ImagineerConfig(AppConfig):
    """Cross-cutting pieces: API tokens, run reaping, health."""

    name = "imagineer_project"
    label = "imagineer"
    verbose_name = "Imagineer operations"

    def ready(self) -> None:
        # Register the project's own maintenance passes and storage.
        from imagineer_project import disk  # noqa: F401
        from imagineer_project.bug_reports import services  # noqa: F401
        from imagineer_project.maintenance import storage  # noqa: F401
        from imagineer_project.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
