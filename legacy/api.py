"""JSON API for legacy imports (/api/admin/legacy-imports): start one, follow
it, read its summary and its items. Staff only. Folders must lie under
LEGACY_IMPORT_ROOTS (422 otherwise, naming the folder by its place only)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router

from imagineer_project.pagination import PageIn, PageOut, keyset_paginate
from imagineer_project.permissions import staff_required
from imagineer_project.run_api import RunRoutes, add_run_routes
from legacy import selectors
from legacy.models import ImportRun
from legacy.schemas import (
    ImportItemFilterIn,
    ImportItemOut,
    ImportRunFilterIn,
    ImportRunIn,
    ImportRunOut,
    ImportSummaryOut,
    summary_out,
)
from legacy.services import legacy_import_create

router = Router(tags=["legacy import"], auth=staff_required)

RUNS = RunRoutes(
    model=ImportRun,
    what="Legacy import",
    location="/api/admin/legacy-imports",
    list_out=ImportRunOut,
    detail_out=ImportRunOut,
    listing=selectors.import_runs,
    filters=ImportRunFilterIn,
    cancel_doc="Stop an import: at once if queued, after the current file if "
    "running; what it imported stays.",
    retry_doc="Go on with a failed or cancelled import: files it recorded are "
    "not read again.",
)


@router.post("", response={202: ImportRunOut})
def legacy_import_start(
    request: HttpRequest, response: HttpResponse, payload: ImportRunIn
) -> Any:
    """Import outputs folders (`sources`) and image packs (`packs`); with
    `dry_run`, only classify. Follow it at the Location header."""
    run = legacy_import_create(
        sources=payload.sources,
        packs=payload.packs,
        dry_run=payload.dry_run,
        created_by=request.user,
    )
    return RUNS.accepted(response, run)


@router.get("/{int:run_id}/summary", response=ImportSummaryOut)
def legacy_import_summary(request: HttpRequest, run_id: int) -> Any:
    """Albums created and reused; images created, duplicate, attached,
    rejected and skipped (by reason); sidecars missing and malformed; bytes
    and time. Counted as it goes while the import runs."""
    run = RUNS.get(run_id)
    return summary_out(run, selectors.import_summary(run))


@router.get("/{int:run_id}/items", response=PageOut[ImportItemOut])
def legacy_import_items(
    request: HttpRequest,
    run_id: int,
    filters: Query[ImportItemFilterIn],
    page: Query[PageIn],
) -> Any:
    """Every file the import met, in order, with what became of it."""
    items = selectors.import_items(run=RUNS.get(run_id), outcome=filters.outcome)
    return keyset_paginate(items, keys=["id"], page=page)


add_run_routes(router, RUNS)
