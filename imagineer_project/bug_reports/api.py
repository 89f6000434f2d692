"""Bug reports in the JSON API: filing (any signed-in user) and the staff API.

POST /api/bug-reports takes a session (with the CSRF header) or an API token
of any user, staff or not; everything under /api/admin/bug-reports needs a
staff user. The assignee is named by username.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Query, Router, Status
from ninja.errors import HttpError
from ninja.utils import check_csrf

from imagineer_project.bug_reports import selectors, services
from imagineer_project.bug_reports.schemas import (
    BugReportDetailOut,
    BugReportFiledOut,
    BugReportFilterIn,
    BugReportIn,
    BugReportOut,
    BugReportUpdateIn,
    PurgeIn,
    PurgeOut,
)
from imagineer_project.errors import error_responses
from imagineer_project.pagination import PageIn, PageOut, keyset_paginate
from imagineer_project.permissions import staff_required
from imagineer_project.trace import current_trace_id


def signed_in_required(request: HttpRequest) -> Any:
    """django-ninja auth callback: any active signed-in user (staff or not);
    session writes need the CSRF header, as for staff."""
    user = getattr(request, "user", None)
    if not user or not user.is_authenticated or not user.is_active:
        raise HttpError(401, "Sign in or send an API token to report a problem.")
    if not getattr(request, "auth_via_token", False) and check_csrf(request):
        raise HttpError(403, "CSRF check failed: send the X-CSRFToken header.")
    return user


router = Router(tags=["bug reports"], auth=signed_in_required)
admin_router = Router(tags=["bug reports"], auth=staff_required)


@router.post("", response={201: BugReportFiledOut})
@error_responses(429)
def bug_report_file(request: HttpRequest, payload: BugReportIn) -> Any:
    """Report a problem. The server adds who, the version, the environment,
    the user agent and the log lines of `trace_id` (else of this request)."""
    report = services.bug_report_file(
        reporter=request.user,
        description=payload.description,
        page_url=payload.page_url or request.headers.get("Referer", ""),
        trace_id=current_trace_id(),
        failing_trace_id=payload.trace_id or "",
        context=payload.context,
        user_agent=request.headers.get("User-Agent", ""),
    )
    return Status(201, report)


@admin_router.get("", response=PageOut[BugReportOut])
def bug_report_list(
    request: HttpRequest, filters: Query[BugReportFilterIn], page: Query[PageIn]
) -> Any:
    """Reports, newest first, of one status when given."""
    reports = selectors.bug_reports(status=filters.status)
    return keyset_paginate(reports, keys=["-id"], page=page)


@admin_router.get("/{int:report_id}", response=BugReportDetailOut)
def bug_report_detail(request: HttpRequest, report_id: int) -> Any:
    """One report with its context, captured log lines and timeline."""
    return selectors.bug_report_get(report_id)


@admin_router.patch("/{int:report_id}", response=BugReportDetailOut)
@error_responses(409)
def bug_report_update(
    request: HttpRequest, report_id: int, payload: BugReportUpdateIn
) -> Any:
    """Move the status (forward, or re-open a closed one; 409 otherwise),
    assign (a staff username; null unassigns) and/or add a note."""
    report = selectors.bug_report_get(report_id)
    changes: dict[str, Any] = {}
    if "assignee" in payload.model_fields_set:
        name = payload.assignee
        changes["assignee"] = selectors.assignee_by_username(name) if name else None
    services.bug_report_update(
        report=report,
        actor=request.user,
        status=payload.status,
        note=payload.note,
        **changes,
    )
    return selectors.bug_report_get(report_id)


@admin_router.delete("/{int:report_id}", response={204: None})
def bug_report_delete(request: HttpRequest, report_id: int) -> Any:
    """Remove a report and its timeline."""
    services.bug_report_delete(report=selectors.bug_report_get(report_id))
    return Status(204, None)


@admin_router.post("/purge", response=PurgeOut)
def bug_reports_purge(request: HttpRequest, payload: PurgeIn) -> Any:
    """Remove reports closed more than `older_than_days` ago (open, triaged
    and in-progress ones never); `dry_run` only lists them."""
    days = payload.older_than_days
    if days is None:
        days = settings.BUG_REPORT_RETENTION_DAYS
    result = services.bug_reports_purge(older_than_days=days, dry_run=payload.dry_run)
    return {
        "dry_run": payload.dry_run,
        "older_than_days": days,
        "count": result.count,
        "ids": result.ids,
    }
