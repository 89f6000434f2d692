"""Admin for dataset versions.

A version is never typed in: "Add" opens a build form (albums with their
readiness counts, trigger word, NSFW) that calls dataset_version_build. The
change page is read-only: warnings, the items with thumbnails and captions,
and a zip download per export layout.
"""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from albums.models import Album
from training.datasets.export import LAYOUTS, dataset_export_zip, export_filename
from training.datasets.selectors import training_albums
from training.datasets.services import DatasetInvalid, dataset_version_build_or_get
from training.models import DatasetVersion

logger = logging.getLogger(__name__)

# The change page shows this many items; the exports have them all.
ITEMS_SHOWN = 200
LAYOUT_NAMES = {
    "flat": "flat PNG + .txt",
    "kohya": "kohya N_concept folder",
    "jsonl": "metadata.jsonl",
}


class AlbumChoiceField(forms.ModelMultipleChoiceField):
    """Albums labelled with what they could train on: "Tarot — 48/50 captioned,
    ready"."""

    readiness: dict[int, dict[str, Any]] = {}  # set per form, in its __init__

    def label_from_instance(self, obj: Album) -> str:
        row = self.readiness.get(obj.pk)
        if row is None:  # made after the form was built
            return obj.name
        ready = "ready" if row["ready_for_training"] else "not ready"
        return (
            f"{obj.name} — {row['captioned_images']}/{row['total_images']} "
            f"captioned, {ready}"
        )


class DatasetBuildForm(forms.Form):
    albums = AlbumChoiceField(
        queryset=Album.objects.order_by("name", "id"),
        widget=forms.CheckboxSelectMultiple,
        help_text="Captioned counts leave out rejected and NSFW images. Images in "
        "several albums are taken once, in the order albums are listed here.",
    )
    name = forms.CharField(
        max_length=200, required=False, help_text="Blank: the album names."
    )
    trigger_word = forms.CharField(
        max_length=100,
        required=False,
        help_text="Blank: the first chosen album's trigger word.",
    )
    no_trigger_word = forms.BooleanField(
        required=False, label="No trigger word", help_text="Train on captions alone."
    )
    include_nsfw = forms.BooleanField(required=False, label="Include NSFW images")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Counted per form, in one query (fields are built once, at import).
        readiness = {row["id"]: row for row in training_albums()}
        self.fields["albums"].readiness = readiness  # type: ignore[attr-defined]

    def trigger_word_choice(self) -> str | None:
        if self.cleaned_data["no_trigger_word"]:
            return ""
        return self.cleaned_data["trigger_word"].strip() or None


class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "hash_prefix",
        "image_count",
        "captioned_count",
        "warning_count",
        "trigger_word",
        "include_nsfw",
        "created_by",
        "created",
    )
    list_filter = ("include_nsfw", "created")
    search_fields = ("name", "manifest_sha256", "trigger_word", "albums__name")
    list_select_related = ("created_by",)
    raw_id_fields = ("created_by",)
    fields = (
        "name",
        "manifest_sha256",
        "album_list",
        "trigger_word",
        "include_nsfw",
        "image_count",
        "captioned_count",
        "warning_list",
        "created_by",
        "created",
        "items_table",
    )
    readonly_fields = fields
    change_form_template = "admin/training/datasetversion/change_form.html"

    class Media:
        css = {"all": ("imagineer/admin.css",)}

    def get_urls(self) -> list[Any]:
        export = self.admin_site.admin_view(self.export_view)
        return [
            path(
                "<path:object_id>/export/<str:layout>/",
                export,
                name="training_datasetversion_export",
            ),
            *super().get_urls(),
        ]

    def has_change_permission(
        self, request: HttpRequest, obj: DatasetVersion | None = None
    ) -> bool:
        return False  # immutable: the change page only shows it

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "layouts": LAYOUT_NAMES.items()}
        return super().change_view(request, object_id, form_url, extra_context)

    # --- columns and fields -----------------------------------------------------------

    @admin.display(description="hash", ordering="manifest_sha256")
    def hash_prefix(self, obj: DatasetVersion) -> str:
        return format_html("<code>{}</code>", obj.manifest_sha256[:12])

    @admin.display(description="warnings")
    def warning_count(self, obj: DatasetVersion) -> int:
        return len(obj.warnings)

    @admin.display(description="albums")
    def album_list(self, obj: DatasetVersion) -> str:
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:albums_album_change", args=[a.pk]), a.name)
                for a in obj.albums.order_by("id")
            ),
        )

    @admin.display(description="warnings")
    def warning_list(self, obj: DatasetVersion) -> str:
        if not obj.warnings:
            return "None."
        return format_html(
            '<ul class="messagelist">{}</ul>',
            format_html_join(
                "", '<li class="warning">{}</li>', ((w,) for w in obj.warnings)
            ),
        )

    @admin.display(description="items")
    def items_table(self, obj: DatasetVersion) -> str:
        items = obj.manifest.get("items", [])
        # Everything shown comes from the manifest: no query per row.
        rows = format_html_join(
            "",
            '<tr><td>{}</td><td><a href="{}"><img class="imagineer-thumb" src="{}" '
            'width="96" height="96" alt="" loading="lazy"></a></td><td>{}</td>'
            "<td>{}</td></tr>",
            (
                (
                    n,
                    reverse("admin:albums_image_change", args=[item["image_id"]]),
                    f"/api/images/{item['image_id']}/thumbnail?size=256",
                    item["caption"],
                    item["caption_source"],
                )
                for n, item in enumerate(items[:ITEMS_SHOWN], start=1)
            ),
        )
        more = len(items) - ITEMS_SHOWN
        return format_html(
            '<table class="imagineer-results"><thead><tr><th>#</th>'
            "<th>Image</th><th>Caption</th><th>Chosen as</th></tr></thead>"
            "<tbody>{}</tbody></table>{}",
            rows,
            format_html(
                "<p>The first {} of {} items; the exports hold them all.</p>",
                ITEMS_SHOWN,
                len(items),
            )
            if more > 0
            else "",
        )

    # --- build ------------------------------------------------------------------------

    def add_view(
        self,
        request: HttpRequest,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Build a version from albums instead of typing one in."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = DatasetBuildForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                dataset, created = dataset_version_build_or_get(
                    albums=list(form.cleaned_data["albums"]),
                    name=form.cleaned_data["name"],
                    trigger_word=form.trigger_word_choice(),
                    include_nsfw=form.cleaned_data["include_nsfw"],
                    created_by=request.user,
                )
            except DatasetInvalid as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request,
                    f"Built “{dataset}”."
                    if created
                    else f"The same selection is already “{dataset}”.",
                    messages.SUCCESS if created else messages.INFO,
                )
                url = reverse("admin:training_datasetversion_change", args=[dataset.pk])
                return HttpResponseRedirect(url)
        context = {
            **self.admin_site.each_context(request),
            "title": "Build a dataset version",
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(
            request, "admin/training/datasetversion/build.html", context
        )

    # --- export -----------------------------------------------------------------------

    def export_view(
        self, request: HttpRequest, object_id: str, layout: str
    ) -> HttpResponse:
        dataset = self.get_object(request, unquote(object_id))
        if dataset is None or layout not in LAYOUTS:
            raise Http404("No such dataset version or layout.")
        if not self.has_view_permission(request, dataset):
            raise PermissionDenied
        try:
            archive = dataset_export_zip(dataset, layout)
        except DatasetInvalid as exc:
            self.message_user(request, str(exc), messages.ERROR)
            url = reverse("admin:training_datasetversion_change", args=[dataset.pk])
            return HttpResponseRedirect(url)
        return FileResponse(
            archive,
            as_attachment=True,
            filename=export_filename(dataset, layout),
            content_type="application/zip",
        )
