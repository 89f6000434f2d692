from __future__ import annotations

from django.conf import settings
from django.db import models

from imagineer_project.runs import BaseRun


class ApiToken(models.Model):
    """A bearer token for scripts. Only its sha256 is stored; the token itself is
    shown once, when it is created."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(
        max_length=12, help_text="First characters, to tell tokens apart."
    )
    key_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class BugReport(models.Model):
    """A problem a signed-in user reported, with what the server knew of it
    when it was filed (docs/bug-reports.md)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        TRIAGED = "triaged", "Triaged"
        IN_PROGRESS = "in_progress", "In progress"
        RESOLVED = "resolved", "Resolved"
        WONT_FIX = "wont_fix", "Won't fix"

    CLOSED = (Status.RESOLVED, Status.WONT_FIX)

    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="bug_reports",
    )
    description = models.TextField()
    status = models.CharField(max_length=16, choices=Status, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_bug_reports",
    )
    page_url = models.CharField(max_length=2048, blank=True)
    # The trace id of the request that filed the report, and of the failing
    # request the reporter came from (an error page or the API's error body).
    trace_id = models.CharField(max_length=64, blank=True)
    failing_trace_id = models.CharField(max_length=64, blank=True)
    app_version = models.CharField(max_length=40, blank=True)
    environment = models.CharField(max_length=40, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    # What the caller sent beyond the description (browser state, ids), as given.
    context = models.JSONField(default=dict, blank=True)
    # The server's log records of the failing trace (else the filing one):
    # [{"time", "level", "logger", "message"}].
    log_records = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    # When it became resolved or won't-fix: retention counts from here.
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The staff list by status, newest first (keyset on id).
            models.Index(fields=["status", "-id"], name="bugreport_status"),
            # The nightly purge: closed reports by when they closed.
            models.Index(fields=["closed_at"], name="bugreport_closed_at"),
        ]

    def __str__(self) -> str:
        return f"Bug report #{self.pk} ({self.status})"


class BugReportEvent(models.Model):
    """One line of a report's timeline: a status change, an assignment or a note."""

    class Kind(models.TextChoices):
        FILED = "filed", "Filed"
        STATUS = "status", "Status changed"
        ASSIGNED = "assigned", "Assigned"
        NOTE = "note", "Note"

    report = models.ForeignKey(
        BugReport, on_delete=models.CASCADE, related_name="events"
    )
    kind = models.CharField(max_length=16, choices=Kind)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    text = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created", "id")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on #{self.report_id}"


class MaintenanceRun(BaseRun):
    """One pass of upkeep (imagineer_project.maintenance): what it removed, or
    in a dry run what it would remove, and the bytes that freed."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        COMMAND = "command", "Command"
        ADMIN = "admin", "Admin"

    task = models.CharField(max_length=40)
    dry_run = models.BooleanField(default=False)
    trigger = models.CharField(max_length=16, choices=Trigger, default=Trigger.SCHEDULE)
    items_removed = models.PositiveIntegerField(default=0)
    bytes_freed = models.PositiveBigIntegerField(default=0)
    # What the pass found: {"removed": [...], "problems": [...], ...} (its docs).
    report = models.JSONField(default=dict, blank=True)

    task_path = "imagineer_project.tasks.run_maintenance"

    class Meta(BaseRun.Meta):
        indexes = [
            models.Index(
                fields=["status", "heartbeat_at"], name="maintenancerun_status"
            ),
            # The admin list and "last run of each task".
            models.Index(fields=["task", "-created"], name="maintenancerun_task"),
        ]

    def __str__(self) -> str:
        dry = " (dry run)" if self.dry_run else ""
        return f"{self.task} #{self.pk}{dry} ({self.status})"


class DiskAlert(models.Model):
    """Whether free space is below the alert threshold, one row per filesystem
    role. The conditional UPDATE that flips `alerting` decides which process
    logs the crossing, so it is logged once, not once per check."""

    name = models.CharField(max_length=40, unique=True)
    alerting = models.BooleanField(default=False)
    since = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # The last reading: {"free", "total", "percent_free", ...}.
    detail = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name}: {'low' if self.alerting else 'ok'}"
