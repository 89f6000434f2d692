"""JSON API for training data: /api/training/albums and /api/training/datasets.

Staff only. A dataset version is built from albums (by id or slug); building
the same selection again answers 200 with the existing version instead of 201.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import FileResponse, HttpRequest
from ninja import Query, Router, Status

from albums.selectors import album_get
from imagineer_project.errors import ApiError
from imagineer_project.pagination import PageIn, PageOut, keyset_paginate
from imagineer_project.permissions import staff_required
from training.datasets import selectors
from training.datasets.export import dataset_export_zip, export_filename
from training.datasets.schemas import (
    DatasetDetailOut,
    DatasetIn,
    DatasetOut,
    ExportIn,
    TrainingAlbumOut,
    TrainingAlbumsIn,
)
from training.datasets.services import DatasetInvalid, dataset_version_build_or_get

logger = logging.getLogger(__name__)

router = Router(tags=["training data"], auth=staff_required)


@router.get("/albums", response=list[TrainingAlbumOut])
def training_album_list(request: HttpRequest, filters: Query[TrainingAlbumsIn]) -> Any:
    """Every album with its total, captioned, NSFW and rejected image counts and
    whether it has enough captioned images to train on its own."""
    return selectors.training_albums(include_nsfw=filters.include_nsfw)


@router.post("/datasets", response={200: DatasetOut, 201: DatasetOut})
def dataset_create(request: HttpRequest, payload: DatasetIn) -> Any:
    """Build a dataset version (201), or find the identical one (200)."""
    albums = [album_get(user=request.user, ref=ref) for ref in payload.albums]
    try:
        dataset, created = dataset_version_build_or_get(
            albums=albums,
            name=payload.name,
            trigger_word=payload.trigger_word,
            include_nsfw=payload.include_nsfw,
            created_by=request.user,
        )
    except DatasetInvalid as exc:
        raise ApiError(422, str(exc), code="dataset_invalid") from exc
    return Status(
        201 if created else 200, selectors.dataset_version_get(dataset_id=dataset.pk)
    )


@router.get("/datasets", response=PageOut[DatasetOut])
def dataset_list(request: HttpRequest, page: Query[PageIn]) -> Any:
    """Dataset versions, newest first."""
    return keyset_paginate(selectors.dataset_version_list(), keys=["-id"], page=page)


@router.get("/datasets/{int:dataset_id}", response=DatasetDetailOut)
def dataset_detail(request: HttpRequest, dataset_id: int) -> Any:
    """A version with its first 1000 items (image id, caption, why that caption)."""
    return selectors.dataset_version_get(dataset_id=dataset_id)


@router.get("/datasets/{int:dataset_id}/export")
def dataset_export_download(
    request: HttpRequest, dataset_id: int, options: Query[ExportIn]
) -> FileResponse:
    """The version as a zip: `flat` PNG + .txt pairs, `kohya` <repeats>_<concept>/
    folder, or `jsonl` images + metadata.jsonl."""
    dataset = selectors.dataset_version_get(dataset_id=dataset_id)
    try:
        archive = dataset_export_zip(dataset, options.layout, repeats=options.repeats)
    except DatasetInvalid as exc:
        raise ApiError(409, str(exc), code="dataset_invalid") from exc
    return FileResponse(
        archive,
        as_attachment=True,
        filename=export_filename(dataset, options.layout),
        content_type="application/zip",
    )
