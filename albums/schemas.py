"""Request and response shapes of the albums, images and uploads API.

Images are addressed by URL only (`file_url`, `thumbnail_url`): no schema here
carries a storage key or a filesystem path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.conf import settings
from ninja import ModelSchema, Schema
from pydantic import Field, StringConstraints

from albums.extensions import image_detail_value
from albums.models import Album, Image, SourceKind, UploadRun, Visibility
from albums.selectors import COVER_COUNT, upload_run_results

AlbumName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]
Description = Annotated[str, StringConstraints(max_length=20_000)]


# --- albums -----------------------------------------------------------------------


TriggerWord = Annotated[str, Field(max_length=100)]


class AlbumIn(Schema):
    name: AlbumName
    description: Description = ""
    trigger_word: TriggerWord = ""
    visibility: Visibility = Visibility.PUBLIC
    source_kind: Album.Kind = Album.Kind.MANUAL


class AlbumPatchIn(Schema):
    name: AlbumName | None = None
    description: Description | None = None
    trigger_word: TriggerWord | None = None
    visibility: Visibility | None = None


class AlbumRefOut(ModelSchema):
    class Meta:
        model = Album
        fields = ["id", "slug", "name"]


class AlbumOut(ModelSchema):
    image_count: int
    cover_thumbnail_urls: list[str]

    class Meta:
        model = Album
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "trigger_word",
            "source_kind",
            "visibility",
            "created",
            "updated",
        ]

    @staticmethod
    def resolve_image_count(album: Album) -> int:
        # The stored count the caller sees, annotated by selectors.album_list.
        return album.shown_count  # type: ignore[attr-defined]

    @staticmethod
    def resolve_cover_thumbnail_urls(album: Album) -> list[str]:
        # cover_0..3 are image ids annotated by selectors.album_list.
        ids = (getattr(album, f"cover_{k}", None) for k in range(COVER_COUNT))
        return [f"/api/images/{pk}/thumbnail" for pk in ids if pk is not None]


class AlbumDeleteOut(Schema):
    images_deleted: int
    images_kept: int


class ImageIdsIn(Schema):
    image_ids: list[int] = Field(min_length=1, max_length=10_000)


class ImagesAddedOut(Schema):
    added: int


class ImagesRemovedOut(Schema):
    removed: int


# --- images -----------------------------------------------------------------------


class ImageFilterIn(Schema):
    album: str | None = Field(None, max_length=220, description="Album id or slug")
    nsfw: bool | None = None
    review_status: Image.ReviewStatus | None = None
    source_kind: SourceKind | None = None
    q: str | None = Field(
        None,
        max_length=200,
        description="Text in the filename, source URL or any label",
    )


class ImageOut(ModelSchema):
    file_url: str
    thumbnail_url: str

    class Meta:
        model = Image
        fields = [
            "id",
            "width",
            "height",
            "format",
            "bytes",
            "is_animated",
            "original_filename",
            "source_kind",
            "source_url",
            "is_nsfw",
            "visibility",
            "review_status",
            "created",
        ]


class LabelOut(Schema):
    """A label as the image detail shows it. Labels belong to the labeling app
    above this one: they are read through the image's `labels` relation."""

    id: int
    kind: str
    text: str
    source: str
    model_name: str
    prompt_version: str
    confidence: float | None
    created: datetime


class ImageDetailOut(ImageOut):
    sha256: str
    page_url: str
    fetched_at: datetime | None
    source_headers: dict[str, Any]
    updated: datetime
    labels: list[LabelOut]
    albums: list[AlbumRefOut]
    recipe: dict[str, Any] | None = Field(
        None, description="How a generated image was made (null for others)"
    )
    provenance: dict[str, Any] | None = Field(
        None,
        description="Where an imported image came from beyond its URLs (a legacy "
        "import: its folder, file, when it was made; for staff its sidecar)",
    )

    @staticmethod
    def resolve_labels(image: Image) -> list[Any]:
        # Prefetched by selectors.image_get(detail=True), ordered by kind.
        return list(image.labels.all())

    @staticmethod
    def resolve_recipe(image: Image, context: Any) -> dict[str, Any] | None:
        # Filled by the training app (albums.extensions), null for the others.
        return image_detail_value("recipe", image, (context or {}).get("request"))

    @staticmethod
    def resolve_provenance(image: Image, context: Any) -> dict[str, Any] | None:
        # Filled by the legacy app (albums.extensions), null for the others.
        return image_detail_value("provenance", image, (context or {}).get("request"))

    @staticmethod
    def resolve_albums(image: Image) -> list[Album]:
        # Prefetched by selectors.image_get(detail=True), filtered to what the
        # caller may see.
        return image.visible_albums


class ImagePatchIn(Schema):
    is_nsfw: bool | None = None
    visibility: Visibility | None = None
    review_status: Image.ReviewStatus | None = None


# --- uploads ----------------------------------------------------------------------


class IngestWarningOut(Schema):
    code: str = Field(description="extension_mismatch or near_duplicate")
    message: str
    image_id: int | None = Field(
        None, description="near_duplicate: the library image it is near"
    )
    distance: int | None = Field(None, description="near_duplicate: pHash bits apart")
    action: str | None = Field(
        None, description="near_duplicate: kept (both), skipped or replaced"
    )


class UploadResultOut(Schema):
    filename: str
    status: str
    image_id: int | None = None
    code: str | None = None
    reason: str | None = None
    warnings: list[IngestWarningOut] = []


class UploadCountsOut(Schema):
    created: int
    duplicate: int
    rejected: int


class UploadRunRefOut(Schema):
    id: int
    url: str = Field(description="where to follow it: /api/uploads/{id}")


class UploadOut(Schema):
    album: AlbumRefOut
    results: list[UploadResultOut]
    counts: UploadCountsOut
    queued: int = Field(
        0, description="files left to the worker (status queued): see `run`"
    )
    run: UploadRunRefOut | None = Field(
        None, description="the upload run decoding the queued files (202 only)"
    )


class UploadRunOut(ModelSchema):
    percent: int
    counts: UploadCountsOut
    album: AlbumRefOut | None

    class Meta:
        model = UploadRun
        fields = [
            "id",
            "status",
            "progress_done",
            "progress_total",
            "message",
            "error",
            "cancel_requested",
            "near_duplicates",
            "created",
            "started_at",
            "finished_at",
        ]

    @staticmethod
    def resolve_counts(run: UploadRun) -> dict[str, int]:
        return {
            "created": run.created_count,
            "duplicate": run.duplicate_count,
            "rejected": run.rejected_count,
        }

    @staticmethod
    def resolve_error(run: UploadRun) -> str:
        # A worker's exception text can quote a path under MEDIA_ROOT.
        return run.error.replace(str(settings.MEDIA_ROOT), "<media>")


class UploadRunDetailOut(UploadRunOut):
    results: list[UploadResultOut]

    @staticmethod
    def resolve_results(run: UploadRun) -> list[dict]:
        return upload_run_results(run)
