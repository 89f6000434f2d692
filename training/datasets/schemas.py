"""Request and response shapes of /api/training/albums, /api/training/datasets
and /api/training/dataset-exports.

No shape carries a storage key or a filesystem path: manifest items are given
by image id (the image's own URLs serve the files).
"""

from __future__ import annotations

from typing import Annotated, Any

from ninja import ModelSchema, Schema
from pydantic import Field, StringConstraints

from albums.schemas import AlbumRefOut
from training.datasets.services import MAX_REPEATS
from training.models import DatasetExport, DatasetVersion

# How many manifest items the detail shows; the export has them all.
DETAIL_ITEMS = 1000

AlbumRef = Annotated[str, StringConstraints(min_length=1, max_length=220)] | int


class TrainingAlbumOut(Schema):
    id: int
    slug: str
    name: str
    trigger_word: str
    total_images: int
    captioned_images: int
    nsfw_images: int
    rejected_images: int
    ready_for_training: bool


class TrainingAlbumsIn(Schema):
    include_nsfw: bool = False


class DatasetIn(Schema):
    albums: list[AlbumRef] = Field(min_length=1, max_length=100)
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    # Absent: the first album's trigger word; "" for none.
    trigger_word: Annotated[str, StringConstraints(max_length=100)] | None = None
    include_nsfw: bool = False
    # One per album, in the same order: how often its images count per epoch
    # (kohya's folder repeats). Absent: 1 each.
    repeats: list[Annotated[int, Field(ge=1, le=MAX_REPEATS)]] | None = Field(
        None, max_length=100
    )


class DatasetOut(ModelSchema):
    albums: list[AlbumRefOut]

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "name",
            "trigger_word",
            "include_nsfw",
            "manifest_sha256",
            "image_count",
            "captioned_count",
            "warnings",
            "created",
        ]

    @staticmethod
    def resolve_albums(dataset: DatasetVersion) -> list[Any]:
        return list(dataset.albums.all())


class DatasetItemOut(Schema):
    image_id: int
    caption: str
    caption_source: str
    repeats: int = 1


class DatasetDetailOut(DatasetOut):
    items: list[DatasetItemOut]
    items_truncated: bool

    @staticmethod
    def resolve_items(dataset: DatasetVersion) -> list[dict[str, Any]]:
        return dataset.manifest.get("items", [])[:DETAIL_ITEMS]

    @staticmethod
    def resolve_items_truncated(dataset: DatasetVersion) -> bool:
        return len(dataset.manifest.get("items", [])) > DETAIL_ITEMS


class ExportIn(Schema):
    layout: DatasetExport.Layout = DatasetExport.Layout.FLAT
    repeats: int = Field(10, ge=1, le=MAX_REPEATS)


class DatasetExportOut(ModelSchema):
    """A zip export of a dataset version (a run): `download_url` serves the zip
    once `status` is succeeded."""

    percent: int
    download_url: str | None

    class Meta:
        model = DatasetExport
        fields = [
            "id",
            "dataset",
            "layout",
            "repeats",
            "status",
            "progress_done",
            "progress_total",
            "message",
            "error",
            "cancel_requested",
            "size",
            "created",
            "started_at",
            "finished_at",
        ]

    @staticmethod
    def resolve_download_url(export: DatasetExport) -> str | None:
        if export.status != DatasetExport.Status.SUCCEEDED:
            return None
        return f"/api/training/dataset-exports/{export.pk}/download"
