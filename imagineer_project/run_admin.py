"""Admin pieces shared by every long job's admin (runs.BaseRun)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

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


class RunAdminMixin(RunProgressMixin):
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
    actions: tuple[str, ...] = ("cancel_selected", "retry_selected")

    def cancel_run(self, run: BaseRun) -> bool:
        return run_request_cancel(run)

    def run_url(self, run: BaseRun) -> str:
        opts = self.opts
        return reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change", args=[run.pk]
        )

    def get_urls(self) -> list[Any]:
        opts = self.opts
        name = f"{opts.app_label}_{opts.model_name}"
        cancel = self.admin_site.admin_view(require_POST(self.cancel_view))
        retry = self.admin_site.admin_view(require_POST(self.retry_view))
        return [
            path("<path:object_id>/cancel/", cancel, name=f"{name}_cancel"),
            path("<path:object_id>/retry/", retry, name=f"{name}_retry"),
            *super().get_urls(),
        ]

    def get_readonly_fields(
        self, request: HttpRequest, obj: BaseRun | None = None
    ) -> Any:
        # A run's page reports what the worker recorded: nothing on it is edited.
        if obj is None:
            return super().get_readonly_fields(request, obj)
        return flatten_fieldsets(self.get_fieldsets(request, obj))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Everything is read-only: hide the save buttons rather than offer no-ops.
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "cancel_label": self.cancel_label,
            "retry_label": self.retry_label,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _run_or_404(self, request: HttpRequest, object_id: str) -> BaseRun:
        run = self.get_object(request, unquote(object_id))
        if run is None:
            raise Http404(f"No such {self.opts.verbose_name}.")
        if not self.has_change_permission(request, run):
            raise PermissionDenied
        return run

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self._run_or_404(request, object_id)
        try:
            run_retry(run)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, run.resume_note + ".", messages.SUCCESS)
        return HttpResponseRedirect(self.run_url(run))

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self._run_or_404(request, object_id)
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
