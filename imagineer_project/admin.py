"""Admin for API tokens. django-q2 registers its own admin (tasks, schedules)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from imagineer_project.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "created", "last_used")
    list_filter = ("created", "last_used")
    search_fields = ("prefix", "name", "user__username")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    # key_hash is deliberately absent: it is never shown, not even read-only.
    fields = ("prefix", "user", "name", "created", "last_used")
    readonly_fields = ("prefix", "user", "created", "last_used")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # The plain token exists only at creation; `manage.py create_api_token`
        # prints it once. Deleting a token here revokes it.
        return False


# Registered by importing: bug reports and maintenance runs have admins of their own.
from imagineer_project.bug_reports import admin as _bug_reports_admin  # noqa: E402, F401
from imagineer_project.maintenance import admin as _maintenance_admin  # noqa: E402, F401
