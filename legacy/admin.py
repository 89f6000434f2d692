"""Admin for legacy imports: start one from the LEGACY_IMPORT_ROOTS folders,
follow it (progress, summary, the items by outcome), cancel, go on after a
failure, or import the same folders again."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from albums.admin import thumbnail_tag
from imagineer_project.admin_pages import (
    RUN_HISTORY_FIELDS,
    RUN_STATE_FIELDS,
    ImagineerAdmin,
)
from imagineer_project.errors import DomainError
from imagineer_project.forms import add_domain_error
from imagineer_project.run_admin import RunAdmin
from legacy.models import ImportItem, ImportRun
from legacy.selectors import import_summary
from legacy.services import legacy_import_again, legacy_import_create


class ImportStartForm(forms.Form):
    sources = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Outputs folders",
        help_text="The old system's outputs: singles, decks, zodiac sets, LoRA tests.",
    )
    packs = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Image pack folders",
        help_text="Folders of folders of images with .txt captions.",
    )
    dry_run = forms.BooleanField(
        required=False,
        label="Dry run",
        help_text="Walk and classify only: see what would happen, change nothing.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        roots = [(root, root) for root in settings.LEGACY_IMPORT_ROOTS]
        self.fields["sources"].choices = roots
        self.fields["packs"].choices = roots


class ImportRunAdmin(RunAdmin):
    progress_unit = " files"
    cancel_label = "Cancel import"
    cancel_note = "Cancel requested; it stops after the current file."
    retry_label = "Go on"
    list_display = ("id", "folders", "dry_run", "status", "progress", "created")
    list_filter = ("status", "dry_run", "created")
    search_fields = ("message", "error")
    list_select_related = ("created_by",)
    raw_id_fields = ("created_by",)
    fields = (
        *RUN_STATE_FIELDS,
        "summary_table",
        "items_links",
        "folder_list",
        "dry_run",
        "created_by",
        "cancel_requested",
        *RUN_HISTORY_FIELDS,
    )
    change_form_template = "admin/legacy/importrun/change_form.html"

    def get_urls(self) -> list[Any]:
        again = self.object_url("again", self.again_view, post_only=True)
        return [again, *super().get_urls()]

    def add_page(self, request: HttpRequest) -> HttpResponse:
        """Start an import from the LEGACY_IMPORT_ROOTS folders."""

        def save(form: ImportStartForm) -> HttpResponse | None:
            data = form.cleaned_data
            try:
                run = legacy_import_create(
                    sources=data["sources"],
                    packs=data["packs"],
                    dry_run=data["dry_run"],
                    created_by=request.user,
                )
            except DomainError as exc:
                add_domain_error(form, exc)
                return None
            self.message_user(
                request, f"{run} is queued; this page follows it.", messages.SUCCESS
            )
            return HttpResponseRedirect(self.run_url(run))

        return self.form_view(
            request,
            self.posted(request, ImportStartForm),
            save=save,
            title="Import from the old system",
            template="admin/legacy/importrun/start.html",
            roots=settings.LEGACY_IMPORT_ROOTS,
        )

    def again_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A new run over the same folders (what was imported is recognised)."""
        run = self.object_or_404(request, object_id)
        try:
            again = legacy_import_again(run=run, created_by=request.user)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(self.run_url(run))
        self.message_user(request, f"{again} is queued.", messages.SUCCESS)
        return HttpResponseRedirect(self.run_url(again))

    @admin.display(description="folders")
    def folders(self, obj: ImportRun) -> str:
        names = [Path(p).name for p in [*obj.sources, *obj.packs]]
        return ", ".join(names) or "—"

    @admin.display(description="folders")
    def folder_list(self, obj: ImportRun) -> str:
        rows = [("outputs", p) for p in obj.sources] + [("packs", p) for p in obj.packs]
        return format_html_join(mark_safe("<br>"), "{}: <code>{}</code>", rows)

    @admin.display(description="summary")
    def summary_table(self, obj: ImportRun) -> str:
        return render_to_string(
            "admin/legacy/importrun/_summary.html", import_summary(obj)
        )

    @admin.display(description="files")
    def items_links(self, obj: ImportRun) -> str:
        url = reverse("admin:legacy_importitem_changelist")
        filters = [({"run__id__exact": obj.pk}, "every file")] + [
            ({"run__id__exact": obj.pk, "outcome__exact": outcome}, label)
            for outcome, label in ImportItem.Outcome.choices
            if outcome != ImportItem.Outcome.PENDING
        ]
        return format_html_join(
            " · ",
            '<a href="{}?{}">{}</a>',
            ((url, urlencode(query), label) for query, label in filters),
        )


class ImportItemAdmin(ImagineerAdmin):
    """Every file an import met: filter by run, outcome, kind."""

    list_display = (
        "thumbnail",
        "relative_path",
        "kind",
        "outcome",
        "reason",
        "album_link",
        "sidecar_status",
        "made_at",
        "run",
    )
    list_filter = ("outcome", "kind", "sidecar_status", "run")
    search_fields = ("relative_path", "reason", "album_name")
    list_select_related = ("album", "run")
    raw_id_fields = ("run", "album", "image")
    list_per_page = 200

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # items are written by their import

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a record of what happened

    @admin.display(description="")
    def thumbnail(self, obj: ImportItem) -> str:
        if obj.image_id is None:
            return ""
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:albums_image_change", args=[obj.image_id]),
            thumbnail_tag(obj.image_id, px=48),
        )

    @admin.display(description="album", ordering="album_name")
    def album_link(self, obj: ImportItem) -> str:
        if obj.album_id is None:
            return obj.album_name or "—"
        url = reverse("admin:albums_album_change", args=[obj.album_id])
        return format_html('<a href="{}">{}</a>', url, obj.album_name)


admin.site.register(ImportRun, ImportRunAdmin)
admin.site.register(ImportItem, ImportItemAdmin)
