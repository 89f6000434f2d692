"""Shapes of /api/bug-reports (filing) and /api/admin/bug-reports (staff)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Schema
from pydantic import Field

from imagineer_project.bug_reports.services import (
    MAX_DESCRIPTION,
    MAX_NOTE,
    PAGE_URL_LENGTH,
)
from imagineer_project.models import BugReport, BugReportEvent

TRACE_PATTERN = r"^[A-Za-z0-9._-]{8,64}$"
Status = BugReport.Status


class BugReportIn(Schema):
    description: str = Field(
        ..., min_length=1, max_length=MAX_DESCRIPTION, description="What went wrong"
    )
    page_url: str = Field(
        "",
        max_length=PAGE_URL_LENGTH,
        description="The page it happened on (else the Referer header)",
    )
    trace_id: str | None = Field(
        None,
        pattern=TRACE_PATTERN,
        description="The trace id of the failing request (an error page's or an "
        "error body's); its server log lines are attached",
    )
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="Anything else worth knowing, as a JSON object (at most 64 KB)",
    )


class BugReportFiledOut(Schema):
    id: int
    status: Status
    trace_id: str = Field(description="The filing request's trace id")
    failing_trace_id: str


class BugReportFilterIn(Schema):
    status: Status | None = None


class BugReportOut(Schema):
    id: int
    status: Status
    description: str
    reporter: str | None
    assignee: str | None
    page_url: str
    trace_id: str
    failing_trace_id: str
    app_version: str
    environment: str
    created: datetime
    updated: datetime
    closed_at: datetime | None

    @staticmethod
    def resolve_reporter(report: BugReport) -> str | None:
        return report.reporter.get_username() if report.reporter else None

    @staticmethod
    def resolve_assignee(report: BugReport) -> str | None:
        return report.assignee.get_username() if report.assignee else None


class BugReportEventOut(Schema):
    kind: BugReportEvent.Kind
    author: str | None
    from_status: str
    to_status: str
    text: str
    created: datetime

    @staticmethod
    def resolve_author(event: BugReportEvent) -> str | None:
        return event.author.get_username() if event.author else None


class LogRecordOut(Schema):
    time: str
    level: str
    logger: str
    message: str


class BugReportDetailOut(BugReportOut):
    user_agent: str
    context: dict[str, Any]
    log_records: list[LogRecordOut]
    events: list[BugReportEventOut]

    @staticmethod
    def resolve_events(report: BugReport) -> list[BugReportEvent]:
        return list(report.events.all())


class BugReportUpdateIn(Schema):
    status: Status | None = None
    assignee: str | None = Field(
        None,
        max_length=150,
        description="A staff user's username; null (or empty) leaves it unassigned",
    )
    note: str | None = Field(None, max_length=MAX_NOTE)


class PurgeIn(Schema):
    older_than_days: int | None = Field(
        None, ge=0, description="Default: BUG_REPORT_RETENTION_DAYS"
    )
    dry_run: bool = False


class PurgeOut(Schema):
    dry_run: bool
    older_than_days: int
    count: int
    ids: list[int]
