"""Reads for training data: album readiness and dataset versions."""

from __future__ import annotations

import logging
from typing import IO, Any

from django.core.files.storage import default_storage
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet

from albums.models import Album, Image
from imagineer_project.errors import Conflict, NotFound, get_or_404
from labeling.selectors import caption_candidates
from training.datasets.services import min_captioned
from training.models import DatasetExport, DatasetVersion

logger = logging.getLogger(__name__)


def _album_counts(include_nsfw: bool) -> dict[str, Count]:
    """Per-album image counts over the album's memberships (one join to the
    image; each membership is one image, so nothing is counted twice)."""
    image = "memberships__image__"
    usable = ~Q(**{f"{image}review_status": Image.ReviewStatus.REJECTED})
    if not include_nsfw:
        usable &= Q(**{f"{image}is_nsfw": False})
    # The same EXISTS as labeling.selectors.captioned_q, seen from the album.
    has_caption = Exists(
        caption_candidates().filter(image=OuterRef("memberships__image"))
    )
    return {
        "total_images": Count("memberships"),
        "captioned_images": Count("memberships", filter=usable & Q(has_caption)),
        "nsfw_images": Count("memberships", filter=Q(**{f"{image}is_nsfw": True})),
        "rejected_images": Count(
            "memberships",
            filter=Q(**{f"{image}review_status": Image.ReviewStatus.REJECTED}),
        ),
    }


def training_albums(*, include_nsfw: bool = False) -> list[dict[str, Any]]:
    """Every album with what it could train on, in one query, newest first.

    `captioned_images` counts what dataset_version_build would take from the
    album alone: images with a caption the training rule can pick (a caption,
    figcaption, alt text or title label that is not rejected), that are not
    themselves rejected and, unless `include_nsfw`, not NSFW.
    `ready_for_training` is captioned_images >= TRAINING_MIN_CAPTIONED.
    Several albums together may reach the minimum when none does alone;
    an image in two albums counts in each.
    """
    minimum = min_captioned()
    counts = _album_counts(include_nsfw)
    rows = (
        Album.objects.annotate(**counts)
        .order_by("-id")
        .values("id", "slug", "name", "trigger_word", *counts)
    )
    return [
        {**row, "ready_for_training": row["captioned_images"] >= minimum}
        for row in rows
    ]


def _albums() -> Prefetch:
    albums = Album.objects.order_by("id").only("slug", "name")
    return Prefetch("albums", queryset=albums)


def dataset_version_list() -> QuerySet[DatasetVersion]:
    # Lists leave the manifest out: it holds every item of the dataset.
    return DatasetVersion.objects.defer("manifest").prefetch_related(_albums())


def dataset_version_get(*, dataset_id: int) -> DatasetVersion:
    versions = DatasetVersion.objects.prefetch_related(_albums())
    return get_or_404(versions, dataset_id, "Dataset version")


def dataset_export_ready(export: DatasetExport) -> DatasetExport:
    """The export, when its zip is written; Conflict until then."""
    if export.status != DatasetExport.Status.SUCCEEDED or not export.file:
        raise Conflict(
            f"Dataset export {export.pk} is {export.status}; its zip is not "
            "written yet.",
            code="export_not_ready",
        )
    return export


def dataset_export_open(export: DatasetExport) -> IO[bytes]:
    """The export's zip from storage, opened for reading."""
    try:
        return default_storage.open(dataset_export_ready(export).file, "rb")
    except FileNotFoundError:
        raise NotFound(
            f"The zip of dataset export {export.pk} is missing from storage; "
            "retry the export.",
            code="file_missing",
        ) from None
