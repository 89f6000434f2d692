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
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from albums.models import Album, thumbnail_url
from imagineer_project.admin_pages import (
    RUN_HISTORY_FIELDS,
    RUN_STATE_FIELDS,
    ImagineerAdmin,
)
from imagineer_project.errors import DomainError
from imagineer_project.forms import add_domain_error
from imagineer_project.run_admin import RunAdmin
from training.datasets.export import LAYOUTS
from training.datasets.selectors import training_albums
from training.datasets.services import (
    MAX_REPEATS,
    dataset_build_start,
    dataset_export_request,
    item_repeats,
    min_captioned,
)
from training.datasets.views import export_response
from training.models import DatasetBuild, DatasetExport, DatasetVersion

logger = logging.getLogger(__name__)

# The change page shows this many items; the exports have them all.
ITEMS_SHOWN = 200
LAYOUT_NAMES = DatasetExport.Layout.choices  # [(layout, what it is)]


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


def parse_album_repeats(text: str, albums: list[Album]) -> dict[int, int]:
    """ "tarot=3, faces=2" (album slug, name or id = count; commas or lines
    between) as {album id: repeats}; raises ValueError saying what is wrong."""
    by_ref = {}
    for album in albums:
        by_ref.update({str(album.pk): album, album.slug: album, album.name: album})
    repeats = {}
    for entry in (e.strip() for e in text.replace("\n", ",").split(",")):
        if not entry:
            continue
        ref, equals, count = (part.strip() for part in entry.rpartition("="))
        if not equals:
            raise ValueError(f"{entry!r}: write album=count, e.g. {entry}=2")
        if ref not in by_ref:
            raise ValueError(f"{ref or entry!r} is not one of the chosen albums")
        if not count.isdigit() or not 1 <= int(count) <= MAX_REPEATS:
            raise ValueError(f"{entry!r}: repeats must be 1 to {MAX_REPEATS}")
        repeats[by_ref[ref].pk] = int(count)
    return repeats


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
    album_repeats = forms.CharField(
        required=False,
        label="Repeats per album",
        help_text="How often each album's images count per epoch (kohya's folder "
        "repeats), e.g. “tarot=3, faces=1”: album slug, name or id. Unlisted: 1.",
        widget=forms.TextInput(attrs={"size": 60}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Counted per form, in one query (fields are built once, at import).
        readiness = {row["id"]: row for row in training_albums()}
        self.fields["albums"].readiness = readiness  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        """Refuse at once a selection that cannot reach the minimum even if no
        image repeats across the albums (the build itself checks exactly), and
        repeats that name an album not chosen."""
        data = super().clean()
        try:
            data["album_repeats_by_id"] = parse_album_repeats(
                data.get("album_repeats", ""), list(data.get("albums") or [])
            )
        except ValueError as exc:
            self.add_error("album_repeats", f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
        if data.get("albums"):
            if data.get("include_nsfw"):
                rows = training_albums(include_nsfw=True)
            else:  # the counts shown beside the boxes
                rows = self.fields["albums"].readiness.values()  # type: ignore[attr-defined]
            counts = {row["id"]: row["captioned_images"] for row in rows}
            most = sum(counts.get(album.pk, 0) for album in data["albums"])
            if most < min_captioned():
                self.add_error(
                    "albums",
                    f"Only {most} captioned images in the chosen albums; at least "
                    f"{min_captioned()} are needed: label the album(s) or add "
                    "captions.",
                )
        return data

    def repeats(self) -> dict[int, int]:
        """{album id: repeats} as parsed from `album_repeats` (unlisted: 1)."""
        return self.cleaned_data.get("album_repeats_by_id", {})

    def trigger_word_choice(self) -> str | None:
        if self.cleaned_data["no_trigger_word"]:
            return ""
        return self.cleaned_data["trigger_word"].strip() or None


class DatasetVersionAdmin(ImagineerAdmin):
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

    def get_urls(self) -> list[Any]:
        export = self.object_url("export/<str:layout>", self.export_view, name="export")
        return [export, *super().get_urls()]

    def has_change_permission(
        self, request: HttpRequest, obj: DatasetVersion | None = None
    ) -> bool:
        return False  # immutable: the change page only shows it

    def change_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        return {**super().change_context(request, obj), "layouts": LAYOUT_NAMES}

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
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    n,
                    reverse("admin:albums_image_change", args=[item["image_id"]]),
                    f"{thumbnail_url(item['image_id'])}?size=256",
                    item["caption"],
                    item["caption_source"],
                    item_repeats(item),
                )
                for n, item in enumerate(items[:ITEMS_SHOWN], start=1)
            ),
        )
        more = len(items) - ITEMS_SHOWN
        return format_html(
            '<table class="imagineer-results"><thead><tr><th>#</th>'
            "<th>Image</th><th>Caption</th><th>Chosen as</th><th>Repeats</th>"
            "</tr></thead>"
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

    def add_page(self, request: HttpRequest) -> HttpResponse:
        """Build a version from albums instead of typing one in."""

        def save(form: DatasetBuildForm) -> HttpResponse | None:
            try:
                build = dataset_build_start(
                    albums=list(form.cleaned_data["albums"]),
                    name=form.cleaned_data["name"],
                    trigger_word=form.trigger_word_choice(),
                    include_nsfw=form.cleaned_data["include_nsfw"],
                    repeats=form.repeats(),
                    created_by=request.user,
                )
            except DomainError as exc:
                add_domain_error(form, exc)
                return None
            return self._built(request, build)

        return self.form_view(
            request,
            self.posted(request, DatasetBuildForm),
            save=save,
            title="Build a dataset version",
            template="admin/training/datasetversion/build.html",
        )

    def _url(self, dataset: DatasetVersion) -> str:
        return reverse("admin:training_datasetversion_change", args=[dataset.pk])

    def _built(self, request: HttpRequest, build: DatasetBuild) -> HttpResponse:
        """The version when the build has already ended (a fast worker), else
        the build's page, which follows it and links the version."""
        build.refresh_from_db()
        if build.status != DatasetBuild.Status.SUCCEEDED:
            self.message_user(
                request,
                "The worker is building the version; this page follows it.",
                messages.INFO,
            )
            return HttpResponseRedirect(build.get_absolute_url())
        dataset = build.dataset
        self.message_user(
            request,
            f"Built “{dataset}”."
            if build.created_version
            else f"The same selection is already “{dataset}”.",
            messages.SUCCESS if build.created_version else messages.INFO,
        )
        return HttpResponseRedirect(self._url(dataset))

    # --- export -----------------------------------------------------------------------

    def export_view(
        self, request: HttpRequest, object_id: str, layout: str
    ) -> HttpResponse:
        """The zip when the worker has written it; else its export run's page,
        which follows it and offers the download once it is done."""
        if layout not in LAYOUTS:
            raise Http404("No such layout.")
        dataset = self.object_or_404(request, object_id, change=False)
        try:
            export = dataset_export_request(
                dataset=dataset, layout=layout, created_by=request.user
            )
        except DomainError as exc:
            # A failed or cancelled export: its page says why and offers Retry.
            self.message_user(request, exc.message, messages.ERROR)
            found = DatasetExport.objects.filter(dataset=dataset, layout=layout).first()
            return HttpResponseRedirect(
                found.get_absolute_url() if found else self._url(dataset)
            )
        if export.status != DatasetExport.Status.SUCCEEDED:
            self.message_user(
                request,
                "The worker is writing the zip; this page offers it when it is done.",
                messages.INFO,
            )
            return HttpResponseRedirect(export.get_absolute_url())
        return export_response(export)


# --- the runs: builds and exports -----------------------------------------------------


class DatasetBuildAdmin(RunAdmin):
    """A build's page: progress, then a link to the version it made or found.
    Builds start from the dataset version's "Add" (the build form)."""

    list_display = ("id", "name", "status", "dataset_link", "created_by", "created")
    list_filter = ("status", "created")
    search_fields = ("name", "message", "error")
    list_select_related = ("dataset", "created_by")
    raw_id_fields = ("dataset", "created_by")
    fields = (
        *RUN_STATE_FIELDS,
        "dataset_link",
        "album_links",
        "name",
        "trigger_word",
        "trigger_word_given",
        "include_nsfw",
        "created_by",
        *RUN_HISTORY_FIELDS,
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # builds start from the dataset version's build form

    @admin.display(description="dataset version")
    def dataset_link(self, obj: DatasetBuild) -> str:
        if obj.dataset_id is None:
            return "—"
        url = reverse("admin:training_datasetversion_change", args=[obj.dataset_id])
        return format_html('<a href="{}">{}</a>', url, obj.dataset)

    @admin.display(description="albums")
    def album_links(self, obj: DatasetBuild) -> str:
        """The albums in the build's order, each with its repeats when not 1."""
        found = Album.objects.in_bulk(obj.album_ids)
        repeats = {int(pk): count for pk, count in obj.album_repeats.items()}
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>{}',
            (
                (
                    reverse("admin:albums_album_change", args=[pk]),
                    found[pk].name,
                    f" ×{repeats[pk]}" if repeats.get(pk, 1) != 1 else "",
                )
                for pk in obj.album_ids
                if pk in found
            ),
        )


class DatasetExportAdmin(RunAdmin):
    """An export's page: progress while the worker writes the zip, then its
    download. Exports start from a dataset version's page (or the API)."""

    list_display = ("id", "dataset", "layout", "repeats", "status", "size", "created")
    list_filter = ("status", "layout")
    search_fields = ("dataset__name", "message", "error")
    list_select_related = ("dataset",)
    raw_id_fields = ("dataset", "created_by")
    fields = (
        *RUN_STATE_FIELDS,
        "download",
        "dataset",
        "layout",
        "repeats",
        "size",
        "created_by",
        *RUN_HISTORY_FIELDS,
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # exports start from a dataset version's page

    def get_urls(self) -> list[Any]:
        return [self.object_url("download", self.download_view), *super().get_urls()]

    @admin.display(description="zip")
    def download(self, obj: DatasetExport) -> str:
        if obj.status != DatasetExport.Status.SUCCEEDED:
            return "Offered here once the worker has written it."
        url = reverse("admin:training_datasetexport_download", args=[obj.pk])
        return format_html('<a href="{}">Download the zip</a>', url)

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        export = self.object_or_404(request, object_id, change=False)
        try:
            return export_response(export)
        except DomainError as exc:  # not written yet, or its zip is gone
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(export.get_absolute_url())
