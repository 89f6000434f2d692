from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
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
        from imagineer_project.ratelimit import rate_limits_check
        from imagineer_project.schedules import ensure_schedules

        # A bad IMAGINEER_RATE_LIMITS stops the start, naming the entry.
        rate_limits_check()
        post_migrate.connect(ensure_schedules, sender=self)
        post_migrate.connect(ratelimit_cache_table_create, sender=self)


class ImagineerAdminConfig(AdminConfig):
    """django.contrib.admin with our site (imagineer_project.admin_site)."""

    default_site = "imagineer_project.admin_site.ImagineerAdminSite"


def ratelimit_cache_table_create(**kwargs: Any) -> None:
    """Make the database cache table the rate-limit counters live in (without
    Redis), so `migrate` is all a new install runs."""
    from django.core.cache import caches
    from django.core.cache.backends.db import BaseDatabaseCache
    from django.core.management import call_command

    if isinstance(caches["ratelimit"], BaseDatabaseCache):
        database = kwargs.get("using") or "default"
        call_command("createcachetable", "--database", database, verbosity=0)
