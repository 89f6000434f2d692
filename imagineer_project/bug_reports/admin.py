"""Admin for bug reports: triage, the timeline, the captured log lines.

Every change goes through the services (the change form's status, assignee
and note as much as the bulk actions), so each one is an event on the
report's timeline with who made it and when.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from imagineer_project.admin_pages import ImagineerAdmin
from imagineer_project.bug_reports.services import (
    MAX_NOTE,
    NEXT,
    bug_report_update,
)
from imagineer_project.errors import DomainError
from imagineer_project.models import BugReport

Status = BugReport.Status


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("today", "Today"),
            ("7d", "Last 7 days"),
            ("30d", "Last 30 days"),
            ("older", "Older than 30 days"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        match self.value():
            case "today":
                start = timezone.localtime(now).replace(
                    hour=0, minute=0, second=0, microsecond=0
                )
                return queryset.filter(created__gte=start)
            case "7d":
                return queryset.filter(created__gte=now - timedelta(days=7))
            case "30d":
                return queryset.filter(created__gte=now - timedelta(days=30))
            case "older":
                return queryset.filter(created__lt=now - timedelta(days=30))
        return queryset


class BugReportAdminForm(forms.ModelForm):
    """Status (only the moves the flow allows), assignee (staff) and a note."""

    note = forms.CharField(
        required=False,
        max_length=MAX_NOTE,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Added to the timeline.",
    )

    class Meta:
        model = BugReport
        fields = ("status", "assignee")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.status
        allowed = {current, *NEXT[current]}
        self.fields["status"].choices = [
            (value, label) for value, label in Status.choices if value in allowed
        ]
        staff = get_user_model().objects.filter(is_active=True, is_staff=True)
        self.fields["assignee"].queryset = staff.order_by("username")


@admin.register(BugReport)
class BugReportAdmin(ImagineerAdmin):
    form = BugReportAdminForm
    list_display = (
        "id",
        "status",
        "short_description",
        "reporter",
        "assignee",
        "environment",
        "created",
    )
    list_display_links = ("id", "short_description")
    list_filter = (
        "status",
        ("assignee", admin.RelatedOnlyFieldListFilter),
        AgeFilter,
        "environment",
    )
    search_fields = ("description", "trace_id", "failing_trace_id", "page_url")
    list_select_related = ("reporter", "assignee")
    raw_id_fields = ("reporter",)
    actions = ("triage", "resolve", "wont_fix", "assign_to_me")
    readonly_fields = (
        "description",
        "reporter",
        "page_url",
        "trace_id",
        "failing_trace_id",
        "app_version",
        "environment",
        "user_agent",
        "created",
        "closed_at",
        "timeline",
        "log_lines",
        "context_json",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "description",
                    "reporter",
                    "page_url",
                    ("trace_id", "failing_trace_id"),
                    ("app_version", "environment"),
                    "user_agent",
                    ("created", "closed_at"),
                )
            },
        ),
        ("Triage", {"fields": ("status", "assignee", "note")}),
        ("Timeline", {"fields": ("timeline",)}),
        ("Server log lines", {"fields": ("log_lines",)}),
        ("Context", {"fields": ("context_json",)}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Reports are filed by people from the pages or the API.
        return False

    def formfield_for_dbfield(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "assignee":
            # A plain choice of staff: no add/change/delete-user buttons here.
            return db_field.formfield(required=False)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("reporter", "assignee")

    @admin.display(description="description")
    def short_description(self, report: BugReport) -> str:
        return Truncator(report.description).chars(80)

    @admin.display(description="timeline")
    def timeline(self, report: BugReport) -> str:
        events = report.events.select_related("author")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    timezone.localtime(e.created).strftime("%Y-%m-%d %H:%M"),
                    e.author or "—",
                    e.get_kind_display(),
                    _event_text(e),
                )
                for e in events
            ),
        )
        return format_html(
            '<table class="bug-timeline"><thead><tr><th>When</th><th>Who</th>'
            "<th>What</th><th></th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="log lines")
    def log_lines(self, report: BugReport) -> str:
        if not report.log_records:
            return "No log lines were kept for this trace."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            (
                (
                    r.get("time", ""),
                    r.get("level", ""),
                    r.get("logger", ""),
                    r.get("message", ""),
                )
                for r in report.log_records
                if isinstance(r, dict)
            ),
        )
        return format_html(
            '<table class="bug-log-lines"><thead><tr><th>Time</th><th>Level</th>'
            "<th>Logger</th><th>Message</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="context")
    def context_json(self, report: BugReport) -> str:
        pretty = json.dumps(report.context, indent=2, sort_keys=True, default=str)
        return format_html("<pre>{}</pre>", pretty)

    def save_model(
        self, request: HttpRequest, obj: BugReport, form: Any, change: bool
    ) -> None:
        # Through the service, from the row as it is stored (the form has
        # already set the new values on `obj`).
        report = BugReport.objects.select_related("assignee").get(pk=obj.pk)
        try:
            bug_report_update(
                report=report,
                actor=request.user,
                status=form.cleaned_data["status"],
                assignee=form.cleaned_data["assignee"],
                note=form.cleaned_data["note"],
            )
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    @admin.action(description="Triage", permissions=["change"])
    def triage(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, "triaged", status=Status.TRIAGED)

    @admin.action(description="Resolve", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, "resolved", status=Status.RESOLVED)

    @admin.action(description="Won't fix", permissions=["change"])
    def wont_fix(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, "marked won't fix", status=Status.WONT_FIX)

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, "assigned to you", assignee=request.user)

    def _bulk(
        self, request: HttpRequest, queryset: QuerySet, done: str, **change: Any
    ) -> None:
        """Apply `change` to each report through the service; the ones the
        flow refuses are named, not changed."""
        changed, refused = 0, []
        for report in queryset.select_related("assignee").order_by("id"):
            try:
                bug_report_update(report=report, actor=request.user, **change)
            except DomainError as exc:
                refused.append(exc.message)
            else:
                changed += 1
        self.message_user(request, f"{changed} report(s) {done}.", messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.WARNING)


def _event_text(event: Any) -> str:
    if event.kind == event.Kind.STATUS:
        return f"{event.from_status} → {event.to_status}"
    if event.kind == event.Kind.ASSIGNED:
        return f"to {event.text}" if event.text else "unassigned"
    return event.text
