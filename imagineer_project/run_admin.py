"""The admin of every long job (runs.BaseRun): `RunAdmin`."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from imagineer_project.admin_pages import ImagineerAdmin
from imagineer_project.errors import DomainError
from imagineer_project.runs import BaseRun, run_request_cancel, run_retry


class RunProgressMixin:
    """`progress` (done/total, for lists) and `progress_bar` (change pages)."""

    progress_unit = ""  # e.g. " files", after the "of N"

    @admin.display(description="progress")
    def progress(self, obj: BaseRun) -> str:
        return f"{obj.progress_done}/{obj.progress_total}"

    @admin.display(description="progress")
    def progress_bar(self, obj: BaseRun) -> str:
        if not obj.progress_total and obj.is_active:
            # Nothing counted yet: an indeterminate bar, never "0 of 0".
            waiting = obj.status == BaseRun.Status.QUEUED
            return format_html(
                '<progress class="imagineer-progress"></progress> {}',
                "Waiting for a worker" if waiting else "Starting",
            )
        return format_html(
            '<progress max="100" value="{}" class="imagineer-progress">{}%</progress> '
            "{}% ({} of {}{})",
            obj.percent,
            obj.percent,
            obj.percent,
            obj.progress_done,
            obj.progress_total,
            self.progress_unit,
        )


class RunAdmin(RunProgressMixin, ImagineerAdmin):
    """A run's change page is a read-only status page with a Cancel button
    while it is active and a Retry button once it failed or was cancelled (the
    `<app>_<model>_cancel` and `_retry` URLs, POST only; templates extend
    admin/imagineer/run_change_form.html), and "Cancel selected" and "Retry
    selected" actions. Both go through the run machine (imagineer_project.runs).

    Subclasses may override `cancel_note` (what "stopping" means for that kind
    of run) and `retry_label` ("" where the page has its own resume button).
    """

    cancel_note = "Cancel requested; the run stops at its next checkpoint."
    cancel_label = "Cancel run"  # the button on the run's page
    retry_label = "Retry"
    # A run's own page is this one; its model's URL points here too.
    view_on_site = False
    actions: tuple[str, ...] = ("cancel_selected", "retry_selected")

    def cancel_run(self, run: BaseRun) -> bool:
        return run_request_cancel(run)

    def run_url(self, run: BaseRun) -> str:
        opts = self.opts
        return reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change", args=[run.pk]
        )

    change_form_template = "admin/imagineer/run_change_form.html"

    def get_urls(self) -> list[Any]:
        return [
            self.object_url("cancel", self.cancel_view, post_only=True),
            self.object_url("retry", self.retry_view, post_only=True),
            *super().get_urls(),
        ]

    def get_readonly_fields(
        self, request: HttpRequest, obj: BaseRun | None = None
    ) -> Any:
        # A run's page reports what the worker recorded: nothing on it is edited.
        if obj is None:
            return super().get_readonly_fields(request, obj)
        return flatten_fieldsets(self.get_fieldsets(request, obj))

    def change_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        # Everything is read-only: hide the save buttons rather than offer no-ops.
        return {
            **super().change_context(request, obj),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "cancel_label": self.cancel_label,
            "retry_label": self.retry_label,
        }

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self.object_or_404(request, object_id)
        try:
            run_retry(run)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, run.resume_note + ".", messages.SUCCESS)
        return HttpResponseRedirect(self.run_url(run))

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self.object_or_404(request, object_id)
        if not self.cancel_run(run):
            level, text = messages.WARNING, "It had already ended."
        elif run.status == BaseRun.Status.CANCELLED:
            level, text = messages.SUCCESS, "Cancelled before it started."
        else:
            level, text = messages.SUCCESS, self.cancel_note
        self.message_user(request, text, level)
        return HttpResponseRedirect(self.run_url(run))

    @admin.action(description="Retry selected", permissions=["change"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        queued, refused = 0, []
        for run in queryset.order_by("pk"):
            try:
                run_retry(run)
                queued += 1
            except DomainError as exc:
                refused.append(f"#{run.pk}: {exc.message}")
        self.message_user(request, f"Queued {queued} again.", messages.SUCCESS)
        if refused:
            self.message_user(request, " ".join(refused), messages.WARNING)

    @admin.action(description="Cancel selected", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        stopped = sum(self.cancel_run(run) for run in queryset)
        self.message_user(
            request,
            f"Asked {stopped} to stop; any that had already ended are unchanged.",
            messages.SUCCESS,
        )
