"""Reads of bug reports, shared by the staff API, the admin and the command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from imagineer_project.errors import Invalid, NotFound, get_or_404
from imagineer_project.models import BugReport

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def bug_reports(*, status: str | None = None) -> QuerySet[BugReport]:
    """Reports with their people, of one status when given (Invalid for an
    unknown one)."""
    reports = BugReport.objects.select_related("reporter", "assignee")
    if status:
        if status not in BugReport.Status.values:
            raise Invalid(
                errors={"status": f"one of {', '.join(BugReport.Status.values)}"}
            )
        reports = reports.filter(status=status)
    return reports


def bug_report_get(report_id: int) -> BugReport:
    """One report with its people and timeline; NotFound when there is none."""
    reports = bug_reports().prefetch_related("events__author")
    return get_or_404(reports, report_id, "Bug report")


def assignee_by_username(username: str) -> User:
    """The active staff user `username`, whom a report may be assigned to."""
    user = (
        get_user_model()
        .objects.filter(username=username, is_active=True, is_staff=True)
        .first()
    )
    if user is None:
        # A name in the body that names nobody: 404, as for an album named in a
        # body elsewhere in the API.
        raise NotFound(
            f"No active staff user {username!r} to assign.",
            details={"errors": {"assignee": "no active staff user by that name"}},
        )
    return user
