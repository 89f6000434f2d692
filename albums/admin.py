"""Admin for albums, images (the triage queue) and bulk uploads.

Writes go through `albums.services`, so deleting here removes
files and thumbnails the same way the API does. Thumbnails are plain <img> tags
pointing at the API, so a changelist never touches storage.

The labeling app extends the image and album admins (captions, tags, "Label
with Claude…") by subclassing them and registering its subclasses in their
place (labeling.admin); nothing here imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR, IncorrectLookupParameters
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from albums.ingest import EXTENSIONS
from albums.maintenance import albums_delete_preview
from albums.models import (
    Album,
    AlbumImage,
    Image,
    NearDuplicates,
    UploadRun,
    thumbnail_url,
)
from albums.selectors import upload_run_results
from albums.services import (
    album_add_images,
    album_create,
    album_delete,
    album_remove_images,
    album_update,
    image_update,
    images_delete,
    images_set,
    upload_run_create,
)
from imagineer_project.admin_actions import action_step
from imagineer_project.admin_pages import (
    RUN_HISTORY_FIELDS,
    RUN_STATE_FIELDS,
    ImagineerAdmin,
)
from imagineer_project.errors import DomainError
from imagineer_project.forms import add_domain_error
from imagineer_project.run_admin import RunAdmin

logger = logging.getLogger(__name__)

SMALL_EDGE = 512
LARGE_EDGE = 2048
RESULTS_SHOWN = 1000


def thumbnail_tag(
    image_id: int,
    size: int = 256,
    *,
    px: int = 64,
    width: int | None = None,
    height: int | None = None,
) -> str:
    """An image's thumbnail for an admin row or page, by id (no query). Given
    the image's width and height, the tag fits a px×px box at the image's own
    aspect ratio (the page keeps its layout while thumbnails load); else square."""
    box = (px, px)
    if width and height:
        scale = px / max(width, height)
        box = (max(1, round(width * scale)), max(1, round(height * scale)))
    return format_html(
        '<img src="{}?size={}" width="{}" height="{}" class="imagineer-thumb" '
        'loading="lazy" alt="">',
        thumbnail_url(image_id),
        size,
        *box,
    )


# --- filters ----------------------------------------------------------------------


class AlbumFilter(admin.SimpleListFilter):
    title = "album"
    parameter_name = "album"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (str(pk), name)
            for pk, name in Album.objects.order_by("name").values_list("pk", "name")
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not self.value():
            return queryset
        if not self.value().isdigit():
            raise IncorrectLookupParameters("album must be an id")
        # One row per image: (album, image) is unique, so the join cannot repeat.
        return queryset.filter(memberships__album_id=int(self.value()))


class SizeFilter(admin.SimpleListFilter):
    title = "size (long side)"
    parameter_name = "size"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("small", f"Small (< {SMALL_EDGE}px)"),
            ("medium", f"Medium ({SMALL_EDGE}–{LARGE_EDGE - 1}px)"),
            ("large", f"Large (≥ {LARGE_EDGE}px)"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        small = Q(width__lt=SMALL_EDGE, height__lt=SMALL_EDGE)
        large = Q(width__gte=LARGE_EDGE) | Q(height__gte=LARGE_EDGE)
        match self.value():
            case "small":
                return queryset.filter(small)
            case "medium":
                return queryset.exclude(small).exclude(large)
            case "large":
                return queryset.filter(large)
        return queryset


# --- images -----------------------------------------------------------------------


TRIAGE_FIELDS = ("is_nsfw", "visibility", "review_status")


class AlbumChoiceForm(forms.Form):
    album = forms.ModelChoiceField(queryset=Album.objects.order_by("name"))


@admin.register(Image)
class ImageAdmin(ImagineerAdmin):
    # Few, narrow columns: the list fits a 1280 px window beside both sidebars
    # without scrolling sideways (format, size, bytes, source and visibility
    # share one column; each of them is also a filter).
    list_display: tuple[str, ...] = (
        "thumbnail",
        "name",
        "file_info",
        "nsfw_badge",
        "review",
    )
    list_display_links = ("thumbnail", "name")
    # Newest first: the changelist, the review grid and the image page's
    # previous / next links all follow this order.
    ordering = ("-id",)
    list_filter = (
        AlbumFilter,
        "is_nsfw",
        "review_status",
        "source_kind",
        "format",
        "visibility",
        SizeFilter,
    )
    search_fields: tuple[str, ...] = ("original_filename", "source_url")
    search_help_text = "Filename or source URL."
    # No foreign key is shown in the list; uploaded_by appears on the change page only.
    list_select_related = False
    raw_id_fields = ("uploaded_by",)
    list_per_page = 100
    actions = (
        "mark_nsfw",
        "mark_safe",
        "approve",
        "reject",
        "make_public",
        "make_private",
        "add_to_album",
        "remove_from_album",
    )  # plus the site-wide "delete selected", which goes through delete_queryset
    fieldsets: tuple[Any, ...] = (
        (None, {"fields": ("review_status", "is_nsfw", "visibility")}),
        ("Preview", {"fields": ("preview",)}),
        (
            "File",
            {
                "fields": (
                    "sha256",
                    "storage_key",
                    "format",
                    "dimensions",
                    "file_size",
                    "is_animated",
                    "phash",
                )
            },
        ),
        (
            "Provenance",
            {
                "fields": (
                    "original_filename",
                    "source_kind",
                    "source_url",
                    "page_url",
                    "fetched_at",
                    "source_headers",
                    "uploaded_by",
                    "album_links",
                    "created",
                    "updated",
                )
            },
        ),
    )
    # Everything on the change page is read-only except the triage fields (and
    # the form fields a subclass adds: see get_readonly_fields).
    editable_fields: tuple[str, ...] = TRIAGE_FIELDS
    change_form_template = "admin/albums/image/change_form.html"

    class Media:
        css = {"all": ("imagineer/review.css",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # images arrive by upload, scrape or import, never by hand

    def get_readonly_fields(
        self, request: HttpRequest, obj: Image | None = None
    ) -> tuple[str, ...]:
        shown = flatten_fieldsets(self.get_fieldsets(request, obj))
        return tuple(name for name in shown if name not in self.editable_fields)

    def get_form(
        self, request: HttpRequest, obj: Image | None = None, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, **kwargs)
        review = form.base_fields.get("review_status")
        if review is not None:
            review.label = "Review"
            review.help_text = REVIEW_HELP
        return form

    def change_context(self, request: HttpRequest, obj: Image) -> dict[str, Any]:
        return {"neighbours": image_neighbours(request, obj)}

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The review grid takes the same filters; its pages are its own.
        query = request.GET.copy()
        query.pop("p", None)
        extra = {"review_query": query.urlencode(), **(extra_context or {})}
        return super().changelist_view(request, extra)

    @admin.display(description="")
    def thumbnail(self, obj: Image) -> str:
        return thumbnail_tag(obj.pk, px=64, width=obj.width, height=obj.height)

    @admin.display(description="name", ordering="original_filename")
    def name(self, obj: Image) -> str:
        return str(obj)

    @admin.display(description="file", ordering="width")
    def file_info(self, obj: Image) -> str:
        return format_html(
            '<span title="sha256 {}">{} · {}×{}<br>{} · {}{}</span>',
            obj.sha256,
            obj.format,
            obj.width,
            obj.height,
            filesizeformat(obj.bytes),
            obj.get_source_kind_display(),
            " · private" if obj.visibility == "private" else "",
        )

    @admin.display(description="NSFW", ordering="is_nsfw", empty_value="")
    def nsfw_badge(self, obj: Image) -> str:
        # A warning, not Django's green "yes" tick.
        if not obj.is_nsfw:
            return ""
        return format_html('<span class="imagineer-nsfw">{}</span>', "NSFW")

    @admin.display(description="review", ordering="review_status")
    def review(self, obj: Image) -> str:
        return format_html(
            '<span class="imagineer-review imagineer-review-{}">{}</span>',
            obj.review_status,
            obj.get_review_status_display(),
        )

    @admin.display(description="size")
    def dimensions(self, obj: Image) -> str:
        return f"{obj.width}×{obj.height}"

    @admin.display(description="bytes", ordering="bytes")
    def file_size(self, obj: Image) -> str:
        return filesizeformat(obj.bytes)

    @admin.display(description="storage key")
    def storage_key(self, obj: Image) -> str:
        return obj.file.name

    @admin.display(description="preview")
    def preview(self, obj: Image) -> str:
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">{}</a>'
            '<div class="help">Click for the original ({}).</div>',
            obj.file_url,
            thumbnail_tag(obj.pk, 512, px=360, width=obj.width, height=obj.height),
            filesizeformat(obj.bytes),
        )

    @admin.display(description="albums")
    def album_links(self, obj: Image) -> str:
        albums = obj.albums.order_by("name")
        return (
            format_html_join(
                ", ",
                '<a href="{}">{}</a>',
                (
                    (reverse("admin:albums_album_change", args=[a.pk]), a.name)
                    for a in albums
                ),
            )
            or "—"
        )

    def save_model(
        self, request: HttpRequest, obj: Image, form: Any, change: bool
    ) -> None:
        triage = [f for f in form.changed_data if f in TRIAGE_FIELDS]
        image_update(image=obj, **{f: form.cleaned_data[f] for f in triage})

    def delete_model(self, request: HttpRequest, obj: Image) -> None:
        images_delete(images=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        images_delete(images=queryset)

    def _set(
        self, request: HttpRequest, queryset: QuerySet, done: str, **fields: Any
    ) -> None:
        count = images_set(image_ids=queryset.values_list("pk", flat=True), **fields)
        self.message_user(request, f"{count} image(s) {done}.", messages.SUCCESS)

    @admin.action(description="Mark NSFW", permissions=["change"])
    def mark_nsfw(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(request, queryset, "marked NSFW", is_nsfw=True)

    @admin.action(description="Mark safe (not NSFW)", permissions=["change"])
    def mark_safe(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(request, queryset, "marked safe", is_nsfw=False)

    @admin.action(description="Approve", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(
            request, queryset, "approved", review_status=Image.ReviewStatus.APPROVED
        )

    @admin.action(description="Reject", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(
            request, queryset, "rejected", review_status=Image.ReviewStatus.REJECTED
        )

    @admin.action(description="Make public", permissions=["change"])
    def make_public(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(request, queryset, "made public", visibility="public")

    @admin.action(description="Make private", permissions=["change"])
    def make_private(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(request, queryset, "made private", visibility="private")

    @admin.action(description="Add to album…", permissions=["change"])
    def add_to_album(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        def apply(album: Album) -> str:
            added = album_add_images(
                album=album, images=queryset.order_by("pk"), added_by=request.user
            )
            return f"Added {added} image(s) to “{album}”."

        return _album_step(
            self,
            request,
            queryset,
            "add_to_album",
            apply,
            Album.objects.order_by("name"),
        )

    @admin.action(description="Remove from album…", permissions=["change"])
    def remove_from_album(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        def apply(album: Album) -> str:
            removed = album_remove_images(
                album=album, image_ids=queryset.values_list("pk", flat=True)
            )
            return f"Removed {removed} image(s) from “{album}”; the images are kept."

        holding = Album.objects.filter(
            pk__in=AlbumImage.objects.filter(image__in=queryset).values("album_id")
        ).order_by("name")
        return _album_step(self, request, queryset, "remove_from_album", apply, holding)


REVIEW_HELP = (
    "Approved: the image trains, with the caption shown (approving approves that "
    "caption too). Rejected: the image is left out of every dataset."
)


def image_neighbours(request: HttpRequest, image: Image) -> dict[str, Any]:
    """Previous and next image in the album the page was opened from (`?album=`
    or the changelist's album filter), in the changelist's order (newest first)."""
    filters = QueryDict(request.GET.get("_changelist_filters", ""))
    album = request.GET.get("album") or filters.get("album") or ""
    if not album.isdigit():
        return {}
    same = Image.objects.filter(memberships__album_id=int(album)).values_list(
        "pk", flat=True
    )
    # Newest first: the previous image has the next larger id.
    previous = same.filter(pk__gt=image.pk).order_by("pk").first()
    following = same.filter(pk__lt=image.pk).order_by("-pk").first()
    query = urlencode({"album": album, "_changelist_filters": f"album={album}"})

    def url(pk: int | None) -> str:
        if pk is None:
            return ""
        return f"{reverse('admin:albums_image_change', args=[pk])}?{query}"

    return {"previous_url": url(previous), "next_url": url(following)}


def _album_step(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    action: str,
    apply: Callable[[Album], str],
    albums: QuerySet,
) -> HttpResponse | None:
    """Pick the album, then apply the action to the selection."""
    adding = action == "add_to_album"

    def form(data: Any) -> AlbumChoiceForm:
        bound = AlbumChoiceForm(data)
        bound.fields["album"].queryset = albums
        return bound

    def done(data: dict[str, Any]) -> None:
        modeladmin.message_user(request, apply(data["album"]), messages.SUCCESS)

    empty = (
        "There are no albums yet."
        if adding
        else ("None of the selected images is in an album.")
    )
    return action_step(
        modeladmin,
        request,
        queryset,
        action=action,
        title="Add to album" if adding else "Remove from album",
        form=form,
        apply=done,
        note=""
        if adding
        else "Removing takes the images out of the album only; "
        "the images themselves are kept.",
        empty_note="" if albums.exists() else empty,
    )


# --- albums -----------------------------------------------------------------------


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        clean_one = super().clean
        files = data if isinstance(data, list | tuple) else [data] if data else []
        return [clean_one(f, initial) for f in files]


class AlbumUploadForm(forms.Form):
    files = MultipleFileField(
        required=False,
        label="Files",
        widget=MultipleFileInput(
            attrs={"accept": "image/*,.zip,application/zip,.txt,text/plain"}
        ),
        help_text="JPEG, PNG, WEBP, GIF or BMP images, .zip archives of them, "
        "and .txt captions: card.txt is the caption of card.png.",
    )
    folder = MultipleFileField(
        required=False,
        label="…or a whole folder",
        widget=MultipleFileInput(attrs={"webkitdirectory": True}),
        help_text="Every file in the folder and its subfolders; non-images are "
        "reported as rejected.",
    )
    near_duplicates = forms.ChoiceField(
        label="Near duplicates",
        choices=NearDuplicates.choices,
        required=False,  # left out: the default, as at every door
        initial=NearDuplicates.REPLACE_SMALLER,
        help_text="A file that looks like a library image (the same picture "
        "resized or re-encoded): keep both, skip the file, or keep the larger.",
    )

    class Media:
        # The drop zone: files and folders dropped, listed, posted as `files`
        # with their `paths` (templates/admin/albums/album/upload.html).
        css = {"all": ("imagineer/upload.css",)}
        js = ("imagineer/upload.js",)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("files") and not data.get("folder"):
            raise forms.ValidationError("Choose some files or a folder.")
        return data

    def uploads(self) -> list[Any]:
        return [*self.cleaned_data["files"], *self.cleaned_data["folder"]]

    def paths(self) -> list[str] | None:
        """Each file's path in the folder it was chosen or dropped from, in
        the files' order: upload.js sends them as `paths` (Django keeps only
        a file's base name). None when the page sent none (no script)."""
        paths = self.data.getlist("paths") if hasattr(self.data, "getlist") else []
        return paths or None


@admin.register(Album)
class AlbumAdmin(ImagineerAdmin):
    list_display = (
        "name",
        "slug",
        "source_kind",
        "visibility",
        "image_count",
        "created_by",
        "created",
    )
    list_filter = ("source_kind", "visibility", "created")
    search_fields = ("name", "slug", "description")
    list_select_related = ("created_by",)
    raw_id_fields = ("created_by",)
    prepopulated_fields = {"slug": ("name",)}
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "slug",
                    "description",
                    "trigger_word",
                    "source_kind",
                    "visibility",
                )
            },
        ),
        (
            "Images",
            {
                "fields": ("images_link",),
                "description": "Deleting this album also deletes the images "
                "that no other album holds (files and thumbnails too); images other "
                "albums hold are kept.",
            },
        ),
        ("History", {"fields": ("created_by", "created", "updated")}),
    )
    readonly_fields = ("images_link", "created_by", "created", "updated")
    change_form_template = "admin/albums/album/change_form.html"

    def get_urls(self) -> list[Any]:
        return [self.object_url("upload", self.upload_view), *super().get_urls()]

    @admin.display(description="images", ordering="image_count")
    def image_count(self, obj: Album) -> int:
        return obj.image_count  # stored (albums.counts), not counted per row

    @admin.display(description="images")
    def images_link(self, obj: Album) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:albums_image_changelist")
        return format_html(
            '<a href="{}?album={}">{} image(s) in this album</a>',
            url,
            obj.pk,
            obj.image_count,
        )

    def save_model(
        self, request: HttpRequest, obj: Album, form: Any, change: bool
    ) -> None:
        if change:
            album_update(album=obj, **{f: getattr(obj, f) for f in form.changed_data})
            return
        # A new album goes through the same service as the API's.
        created = album_create(
            name=obj.name,
            slug=obj.slug,
            description=obj.description,
            trigger_word=obj.trigger_word,
            source_kind=obj.source_kind,
            visibility=obj.visibility,
            created_by=request.user,
        )
        obj.pk, obj.created_by, obj.created = (
            created.pk,
            created.created_by,
            created.created,
        )

    def response_add(
        self, request: HttpRequest, obj: Album, post_url_continue: str | None = None
    ) -> HttpResponse:
        # A new album's next step is on its own page (upload, scrape into it...),
        # not back on the list; "Save and add another" still adds another.
        if "_addanother" in request.POST or IS_POPUP_VAR in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(
            request, f"The album “{obj}” was added: add images to it.", messages.SUCCESS
        )
        return HttpResponseRedirect(reverse("admin:albums_album_change", args=[obj.pk]))

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """Django's list of what a delete takes (the albums and their
        memberships), plus the images only these albums hold, which
        album_delete deletes with their files and thumbnails; on the delete
        page and on "delete selected" alike."""
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(
            objs, request
        )
        preview = albums_delete_preview(album_ids=[album.pk for album in objs])
        if preview["images_deleted"]:
            model_count["images"] = preview["images_deleted"]
            to_delete.append(
                f"{preview['images_deleted']} image(s) no other album holds, with "
                f"their files ({filesizeformat(preview['bytes_deleted'])}) and "
                "thumbnails"
            )
        return to_delete, model_count, perms_needed, protected

    def render_delete_form(
        self, request: HttpRequest, context: dict[str, Any]
    ) -> HttpResponse:
        context["preview"] = albums_delete_preview(album_ids=[context["object"].pk])
        return super().render_delete_form(request, context)

    def delete_model(self, request: HttpRequest, obj: Album) -> None:
        album_delete(album=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for album in queryset:
            album_delete(album=album)

    def upload_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        album = self.object_or_404(request, object_id)

        def save(form: AlbumUploadForm) -> HttpResponse | None:
            uploads = form.uploads()
            try:
                run = upload_run_create(
                    files=uploads,
                    album=album,
                    uploaded_by=request.user,
                    near_duplicates=form.cleaned_data["near_duplicates"] or None,
                    rate_limited=True,
                    paths=form.paths(),
                )
            except DomainError as exc:  # below the disk floor: said on the form
                add_domain_error(form, exc)
                return None
            captions = sum(len(item.get("sidecars", ())) for item in run.staged_files)
            self.message_user(
                request,
                format_html(
                    "Uploaded {} file(s) into “{}”{}; the worker is adding them "
                    'now: <a href="{}">follow upload #{}</a> (its progress and '
                    "what each file became).",
                    len(uploads),
                    album,
                    f", {captions} of them caption file(s)" if captions else "",
                    reverse("admin:albums_uploadrun_change", args=[run.pk]),
                    run.pk,
                ),
                messages.SUCCESS,
            )
            # Back on the album, where the next step (label, review, train)
            # starts; the message links the run.
            return HttpResponseRedirect(
                reverse("admin:albums_album_change", args=[album.pk])
            )

        return self.form_view(
            request,
            self.posted(request, AlbumUploadForm),
            save=save,
            title=f"Upload images to “{album}”",
            template="admin/albums/album/upload.html",
            original=album,
            max_files=settings.DATA_UPLOAD_MAX_NUMBER_FILES,
            max_bytes=settings.IMAGINEER_MAX_UPLOAD_BYTES,
            image_extensions=" ".join(sorted(EXTENSIONS)),
        )


# --- upload runs ------------------------------------------------------------------


@admin.register(UploadRun)
class UploadRunAdmin(RunAdmin):
    progress_unit = " files"
    cancel_note = "Cancel requested; the run stops after the current file."
    list_display = (
        "id",
        "album",
        "status",
        "progress",
        "created_count",
        "duplicate_count",
        "rejected_count",
        "uploaded_by",
        "created",
        "finished_at",
    )
    list_filter = ("status", "created")
    search_fields = ("album__name", "message", "error")
    list_select_related = ("album", "uploaded_by")
    raw_id_fields = ("album", "uploaded_by")
    fields = (
        "album",
        "uploaded_by",
        "source_folder",
        *RUN_STATE_FIELDS,
        "created_count",
        "duplicate_count",
        "rejected_count",
        "sidecar_count",
        "near_duplicates",
        "cancel_requested",
        *RUN_HISTORY_FIELDS,
        "results_table",
    )
    change_form_template = "admin/albums/uploadrun/change_form.html"

    def get_fields(self, request: HttpRequest, obj: UploadRun | None = None) -> Any:
        # A folder import's folder and sidecar count; an upload has neither.
        folder = bool(obj and obj.source_folder)
        hidden = () if folder else ("source_folder", "sidecar_count")
        return [name for name in self.fields if name not in hidden]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # uploads start from an album's page, imports from the CLI

    def has_delete_permission(
        self, request: HttpRequest, obj: UploadRun | None = None
    ) -> bool:
        active = obj is not None and obj.is_active
        return not active and super().has_delete_permission(request, obj)

    @admin.display(description="results")
    def results_table(self, obj: UploadRun) -> str:
        # Its UploadFile rows: the first RESULTS_SHOWN in one query, and a count.
        results = upload_run_results(obj, limit=RESULTS_SHOWN)
        if not results:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (_result_cells(r) for r in results),
        )
        more = obj.files.count() - RESULTS_SHOWN if len(results) == RESULTS_SHOWN else 0
        return format_html(
            '<table class="imagineer-results"><thead><tr><th>File</th><th>Status</th>'
            "<th>Image</th><th>Reason or warnings</th></tr></thead>"
            "<tbody>{}</tbody></table>{}",
            rows,
            format_html("<p>…and {} more.</p>", more) if more > 0 else "",
        )


def _result_cells(result: dict[str, Any]) -> tuple[str, str, str, str]:
    image_id = result.get("image_id")
    link = (
        format_html(
            '<a href="{}">#{}</a>',
            reverse("admin:albums_image_change", args=[image_id]),
            image_id,
        )
        if image_id
        else ""
    )
    return (
        result.get("filename", ""),
        result.get("status", ""),
        link,
        # A rejection's reason, or what the warnings say (extension_mismatch,
        # near_duplicate) about a file that was kept or linked.
        "; ".join(
            text
            for text in (
                result.get("reason", ""),
                *(w.get("message", "") for w in result.get("warnings", ())),
            )
            if text
        ),
    )
