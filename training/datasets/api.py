"""JSON API for training data: /api/training/albums, /api/training/datasets and
/api/training/dataset-exports.

Staff only. A dataset version is built from albums (by id or slug); building
the same selection again answers 200 with the existing version instead of 201.
A zip export is written once by the worker (a run) and then served from storage.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import FileResponse, HttpRequest, HttpResponse
from ninja import Query, Router, Status

from albums.selectors import album_get
from imagineer_project.errors import error_responses
from imagineer_project.pagination import PageIn, PageOut, keyset_paginate
from imagineer_project.permissions import staff_required
from imagineer_project.run_api import RunRoutes, add_run_routes
from training.datasets import selectors
from training.datasets.schemas import (
    DatasetDetailOut,
    DatasetExportOut,
    DatasetIn,
    DatasetOut,
    ExportIn,
    TrainingAlbumOut,
    TrainingAlbumsIn,
)
from training.datasets.services import (
    dataset_export_request,
    dataset_version_build_or_get,
    repeats_by_album,
)
from training.datasets.views import export_response
from training.models import DatasetExport

logger = logging.getLogger(__name__)

router = Router(tags=["training data"], auth=staff_required)
exports_router = Router(tags=["training data"], auth=staff_required)


@router.get("/albums", response=list[TrainingAlbumOut])
def training_album_list(request: HttpRequest, filters: Query[TrainingAlbumsIn]) -> Any:
    """Every album with its total, captioned, NSFW and rejected image counts and
    whether it has enough captioned images to train on its own."""
    return selectors.training_albums(include_nsfw=filters.include_nsfw)


@router.post("/datasets", response={200: DatasetOut, 201: DatasetOut})
@error_responses(404)
def dataset_create(request: HttpRequest, payload: DatasetIn) -> Any:
    """Build a dataset version (201), or find the identical one (200)."""
    albums = [album_get(user=request.user, ref=ref) for ref in payload.albums]
    dataset, created = dataset_version_build_or_get(
        albums=albums,
        name=payload.name,
        trigger_word=payload.trigger_word,
        include_nsfw=payload.include_nsfw,
        repeats=repeats_by_album(albums, payload.repeats),
        created_by=request.user,
    )
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


@router.get(
    "/datasets/{int:dataset_id}/export",
    response={202: DatasetExportOut},
    openapi_extra={
        "responses": {
            200: {
                "description": "The zip, once the export has been written",
                "content": {"application/zip": {}},
            }
        }
    },
)
def dataset_export_download(
    request: HttpRequest,
    response: HttpResponse,
    dataset_id: int,
    options: Query[ExportIn],
) -> Any:
    """The version as a zip: `flat` PNG + .txt pairs, `kohya` <repeats>_<concept>/
    folder, or `jsonl` images + metadata.jsonl. The worker writes it once (a
    dataset export run); until it has, this answers 202 with the export's URL
    in Location: ask again (or watch the export) and the zip comes."""
    dataset = selectors.dataset_version_get(dataset_id=dataset_id)
    export = dataset_export_request(
        dataset=dataset,
        layout=options.layout,
        repeats=options.repeats,
        created_by=request.user,
    )
    if export.status == DatasetExport.Status.SUCCEEDED:
        return export_response(export)
    response["Retry-After"] = "5"
    return EXPORTS.accepted(response, export)


EXPORTS = RunRoutes(
    model=DatasetExport,
    what="Dataset export",
    location="/api/training/dataset-exports",
    list_out=DatasetExportOut,
    detail_out=DatasetExportOut,
    detail=lambda: DatasetExport.objects.select_related("dataset"),
    cancel_doc="Stop writing the zip.",
    retry_doc="Write a failed or cancelled export again.",
)


@exports_router.get("/{int:export_id}/download")
def dataset_export_file(request: HttpRequest, export_id: int) -> FileResponse:
    """The export's zip; 409 until the worker has written it."""
    return export_response(selectors.dataset_export_ready(EXPORTS.get(export_id)))


add_run_routes(exports_router, EXPORTS)
