"""Filing, triaging and purging bug reports (docs/bug-reports.md).

The status flow is open -> triaged -> in_progress -> resolved | wont_fix.
A report moves forward and may skip steps (whoever triages can resolve an
open report at once); a closed one (resolved, won't fix) may only be re-opened,
back to open. Every change is an event with its author and time; `closed_at`
is set on closing and cleared on re-opening, and retention counts from it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from imagineer_project.errors import Conflict, Invalid
from imagineer_project.logcapture import trace_records
from imagineer_project.maintenance.registry import PassReport, register_pass
from imagineer_project.models import BugReport, BugReportEvent
from imagineer_project.ratelimit import rate_limit_take
from imagineer_project.trace import new_trace_id

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

Status = BugReport.Status
MAX_DESCRIPTION = 10_000
MAX_NOTE = 10_000
MAX_CONTEXT_BYTES = 64 * 1024
PAGE_URL_LENGTH = BugReport._meta.get_field("page_url").max_length or 2048
USER_AGENT_LENGTH = BugReport._meta.get_field("user_agent").max_length or 500

# Where each status may go. Forward, skipping steps; closed ones re-open.
_ORDER = [Status.OPEN, Status.TRIAGED, Status.IN_PROGRESS]
NEXT: dict[str, set[str]] = {
    status: {*_ORDER[i + 1 :], *BugReport.CLOSED} for i, status in enumerate(_ORDER)
}
NEXT[Status.RESOLVED] = {Status.OPEN}
NEXT[Status.WONT_FIX] = {Status.OPEN}


class Unchanged:
    """The assignee is left as it is (None would clear it)."""


UNCHANGED = Unchanged()


def trace_id_valid(text: str | None) -> bool:
    """A trace id as the middleware accepts one from a caller."""
    return bool(text) and new_trace_id(text) == text


@dataclass
class PurgeResult:
    count: int = 0
    ids: list[int] = field(default_factory=list)


def bug_report_file(
    *,
    reporter: User | None,
    description: str,
    page_url: str = "",
    trace_id: str = "",
    failing_trace_id: str = "",
    context: Any = None,
    user_agent: str = "",
) -> BugReport:
    """File a report as `reporter`, with what the server knows: the version,
    the environment and the log lines of the failing trace (else of
    `trace_id`, the filing request's). Invalid for an empty or overlong
    description, a malformed failing trace id or a context that is not a
    small JSON object; RateLimitExceeded past the `bug_report` rate limit
    (per user; per client IP for an anonymous reporter)."""
    description = (description or "").strip()
    failing_trace_id = (failing_trace_id or "").strip()
    context = {} if context is None else context
    _check_filing(description, failing_trace_id, context)
    rate_limit_take("bug_report", user=reporter)
    with transaction.atomic():
        report = BugReport.objects.create(
            reporter=reporter,
            description=description,
            page_url=(page_url or "")[:PAGE_URL_LENGTH],
            trace_id=trace_id if trace_id_valid(trace_id) else "",
            failing_trace_id=failing_trace_id,
            app_version=settings.IMAGINEER_VERSION,
            environment=settings.ENVIRONMENT,
            user_agent=(user_agent or "")[:USER_AGENT_LENGTH],
            context=context,
            log_records=trace_records(failing_trace_id or trace_id),
        )
        BugReportEvent.objects.create(
            report=report,
            kind=BugReportEvent.Kind.FILED,
            author=reporter,
            to_status=report.status,
        )
    logger.info("Bug report #%s filed", report.pk)
    return report


def _check_filing(description: str, failing_trace_id: str, context: Any) -> None:
    errors: dict[str, str] = {}
    if not description:
        errors["description"] = "describe the problem"
    elif len(description) > MAX_DESCRIPTION:
        errors["description"] = f"at most {MAX_DESCRIPTION} characters"
    if failing_trace_id and not trace_id_valid(failing_trace_id):
        errors["trace_id"] = "not a trace id (8-64 letters, digits, '.', '_', '-')"
    if not isinstance(context, dict):
        errors["context"] = "must be a JSON object"
    elif len(json.dumps(context, default=str)) > MAX_CONTEXT_BYTES:
        errors["context"] = f"at most {MAX_CONTEXT_BYTES // 1024} KB of JSON"
    if errors:
        raise Invalid(errors=errors)


def bug_report_update(
    *,
    report: BugReport,
    actor: User | None,
    status: str | None = None,
    assignee: User | None | Unchanged = UNCHANGED,
    note: str | None = None,
) -> BugReport:
    """Change the status and/or the assignee (None clears it) and/or add a
    note, each recorded as an event by `actor`. Conflict for a move the
    flow does not allow, or when someone changed the status meanwhile;
    Invalid for an unknown status, a non-staff assignee or an overlong note."""
    note = (note or "").strip()
    _check_update(report, status, assignee, note)
    with transaction.atomic():
        if status is not None and status != report.status:
            _move(report, actor, status)
        if not isinstance(assignee, Unchanged) and assignee != report.assignee:
            _assign(report, actor, assignee)
        if note:
            BugReportEvent.objects.create(
                report=report, kind=BugReportEvent.Kind.NOTE, author=actor, text=note
            )
    return report


def _check_update(
    report: BugReport, status: str | None, assignee: Any, note: str
) -> None:
    if status is not None and status not in Status.values:
        raise Invalid(errors={"status": f"one of {', '.join(Status.values)}"})
    moving = status is not None and status != report.status
    if moving and status not in NEXT[report.status]:
        raise Conflict(
            f"Bug report #{report.pk} is {report.status}; it cannot become "
            f"{status} (allowed: {', '.join(sorted(NEXT[report.status]))}).",
            code="bug_report_status",
        )
    if isinstance(assignee, Unchanged) or assignee is None:
        pass
    elif not (assignee.is_active and assignee.is_staff):
        raise Invalid(errors={"assignee": "must be an active staff user"})
    if len(note) > MAX_NOTE:
        raise Invalid(errors={"note": f"at most {MAX_NOTE} characters"})


def _move(report: BugReport, actor: User | None, status: str) -> None:
    old = report.status
    closed_at = timezone.now() if status in BugReport.CLOSED else None
    # Conditional on the status we checked: two people moving the same report
    # at once cannot both win.
    moved = BugReport.objects.filter(pk=report.pk, status=old).update(
        status=status, closed_at=closed_at, updated=timezone.now()
    )
    if not moved:
        raise Conflict(
            f"Bug report #{report.pk} changed meanwhile; reload it.",
            code="bug_report_changed",
        )
    report.status, report.closed_at = status, closed_at
    BugReportEvent.objects.create(
        report=report,
        kind=BugReportEvent.Kind.STATUS,
        author=actor,
        from_status=old,
        to_status=status,
    )


def _assign(report: BugReport, actor: User | None, assignee: User | None) -> None:
    BugReport.objects.filter(pk=report.pk).update(
        assignee=assignee, updated=timezone.now()
    )
    report.assignee = assignee
    BugReportEvent.objects.create(
        report=report,
        kind=BugReportEvent.Kind.ASSIGNED,
        author=actor,
        text=assignee.get_username() if assignee is not None else "",
    )


def bug_report_delete(*, report: BugReport) -> None:
    """Remove a report and its timeline."""
    report.delete()


def bug_reports_purge(*, older_than_days: int, dry_run: bool = False) -> PurgeResult:
    """Remove the reports resolved or won't-fix more than `older_than_days`
    ago (open, triaged and in-progress ones never); with `dry_run`, only say
    which."""
    if older_than_days < 0:
        raise Invalid(errors={"older_than_days": "must be 0 or more"})
    cutoff = timezone.now() - timedelta(days=older_than_days)
    due = BugReport.objects.filter(status__in=BugReport.CLOSED, closed_at__lt=cutoff)
    ids = list(due.order_by("id").values_list("id", flat=True))
    if dry_run or not ids:
        return PurgeResult(len(ids), ids)
    # The same conditions again: a report re-opened since the read stays.
    gone = list(due.filter(pk__in=ids).values_list("id", flat=True))
    due.filter(pk__in=gone).delete()
    logger.info("Purged %s closed bug reports", len(gone))
    return PurgeResult(len(gone), gone)


def purge_bug_reports_pass(report: PassReport) -> None:
    """The nightly pass: closed reports past BUG_REPORT_RETENTION_DAYS."""
    result = bug_reports_purge(
        older_than_days=settings.BUG_REPORT_RETENTION_DAYS, dry_run=report.dry_run
    )
    report.facts["retention_days"] = settings.BUG_REPORT_RETENTION_DAYS
    for report_id in result.ids:
        report.remove("bug report", f"#{report_id}")


register_pass(
    "purge-bug-reports",
    purge_bug_reports_pass,
    minutes=24 * 60,
    description="Remove bug reports resolved or won't-fix longer than "
    "BUG_REPORT_RETENTION_DAYS (default 30) ago; open ones are kept.",
)
