"""Admin for maintenance runs: each pass, its report, and running one now.

There is no add form: "Run maintenance" (the add page) starts the chosen
passes through the runner, a dry run unless unticked.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from imagineer_project.admin_pages import RUN_HISTORY_FIELDS, RUN_STATE_FIELDS
from imagineer_project.errors import Conflict
from imagineer_project.maintenance.registry import PASSES
from imagineer_project.maintenance.runner import (
    maintenance_run_start,
    maintenance_task_names,
)
from imagineer_project.models import MaintenanceRun
from imagineer_project.run_admin import RunAdmin

# Removed things and problems listed on a run's page (the report keeps 200).
SHOWN = 200


class MaintenanceStartForm(forms.Form):
    tasks = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        label="Passes",
        help_text="Each runs on the worker as a maintenance run of its own.",
    )
    dry_run = forms.BooleanField(
        required=False,
        initial=True,
        label="Dry run",
        help_text="Only report what would be removed; untick to remove it.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read at each page, so passes registered by every app are offered.
        self.fields["tasks"].choices = [
            (name, f"{name}: {PASSES[name].description}")
            for name in maintenance_task_names()
        ]


@admin.register(MaintenanceRun)
class MaintenanceRunAdmin(RunAdmin):
    progress_unit = " steps"
    cancel_note = "Cancel requested; the pass stops at its next step."
    retry_label = "Run again"
    list_display = (
        "id",
        "task",
        "status",
        "dry_run",
        "trigger",
        "items_removed",
        "freed",
        "created",
        "finished_at",
    )
    list_filter = ("task", "status", "dry_run", "trigger")
    search_fields = ("task", "message", "error")
    list_select_related = ()  # no relations: one query per page
    fields = (
        "task",
        "dry_run",
        "trigger",
        *RUN_STATE_FIELDS,
        "items_removed",
        "freed",
        "removed_table",
        "problems_list",
        "facts_table",
        *RUN_HISTORY_FIELDS,
    )
    change_list_template = "admin/imagineer/maintenancerun/change_list.html"

    @admin.display(description="freed", ordering="bytes_freed")
    def freed(self, obj: MaintenanceRun) -> str:
        return filesizeformat(obj.bytes_freed) if obj.bytes_freed else "—"

    @admin.display(description="removed")
    def removed_table(self, obj: MaintenanceRun) -> SafeString | str:
        removed = (obj.report or {}).get("removed", [])
        if not removed:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    item["what"],
                    item["name"],
                    item.get("count", 1),
                    filesizeformat(item.get("size") or 0),
                )
                for item in removed[:SHOWN]
            ),
        )
        verb = "Would remove" if obj.dry_run else "Removed"
        return format_html(
            '<table class="imagineer-results"><thead><tr><th>What</th><th>Name</th>'
            "<th>Count</th><th>Size</th></tr></thead><tbody>{}</tbody></table>{}",
            rows,
            _more(
                obj.items_removed,
                sum(i.get("count", 1) for i in removed[:SHOWN]),
                verb,
            ),
        )

    @admin.display(description="problems")
    def problems_list(self, obj: MaintenanceRun) -> SafeString | str:
        report = obj.report or {}
        problems = report.get("problems", [])
        if not problems:
            return "—"
        items = format_html_join("", "<li>{}</li>", ((p,) for p in problems[:SHOWN]))
        return format_html(
            "<ul>{}</ul>{}",
            items,
            _more(report.get("problem_count", 0), len(problems), "Found"),
        )

    @admin.display(description="figures")
    def facts_table(self, obj: MaintenanceRun) -> SafeString | str:
        facts = (obj.report or {}).get("facts") or {}
        if not facts:
            return "—"
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td></tr>",
            ((name, _fact(value)) for name, value in facts.items()),
        )
        return format_html('<table class="imagineer-results">{}</table>', rows)

    # --- "Run maintenance" ------------------------------------------------------------

    def add_page(self, request: HttpRequest) -> HttpResponse:
        return self.form_view(
            request,
            self.posted(request, MaintenanceStartForm),
            save=lambda form: self._start(request, form),
            title="Run maintenance",
            template="admin/imagineer/maintenancerun/start.html",
        )

    def _start(self, request: HttpRequest, form: MaintenanceStartForm) -> HttpResponse:
        dry_run = form.cleaned_data["dry_run"]
        started, refused = [], []
        for task in form.cleaned_data["tasks"]:
            try:
                started.append(
                    maintenance_run_start(
                        task=task,
                        dry_run=dry_run,
                        trigger=MaintenanceRun.Trigger.ADMIN,
                    )
                )
            except Conflict as exc:
                refused.append(exc.message)
        if started:
            names = ", ".join(run.task for run in started)
            kind = "dry run" if dry_run else "run"
            self.message_user(request, f"Queued a {kind} of {names}.", messages.SUCCESS)
        if refused:
            self.message_user(request, " ".join(refused), messages.WARNING)
        if len(started) == 1:
            return HttpResponseRedirect(self.run_url(started[0]))
        opts = self.opts
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        )


def _more(total: int, shown: int, verb: str) -> str:
    if total <= shown:
        return ""
    return format_html("<p>{} {} more not listed.</p>", verb, total - shown)


def _fact(value: Any) -> SafeString | str:
    """A figure, or a folder → figure mapping as a nested table."""
    if not isinstance(value, dict):
        return str(value)
    if not value:
        return "—"
    rows = format_html_join(
        "",
        "<tr><th>{}</th><td>{}</td></tr>",
        ((name, _fact(inner)) for name, inner in value.items()),
    )
    return format_html("<table>{}</table>", rows)
