"""JSON API for scrape jobs (/api/scrape-jobs): start, watch, cancel, clean up.

Staff only, every endpoint. Handlers call a selector or a service and return a
schema; expected failures are ApiError, shaped once at the API root.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from ninja import Query, Router, Status

from imagineer_project.errors import ApiError
from imagineer_project.pagination import PageIn, PageOut, keyset_paginate
from imagineer_project.permissions import staff_required
from imagineer_project.runs import run_request_cancel
from scraping import selectors
from scraping.cleanup import scrape_job_cleanup
from scraping.models import ScrapeJob
from scraping.schemas import (
    CrawlLogEntryOut,
    CrawlLogFilterIn,
    ScrapeJobCleanupOut,
    ScrapeJobDetailOut,
    ScrapeJobIn,
    ScrapeJobOut,
)

logger = logging.getLogger(__name__)

router = Router(tags=["scraping"], auth=staff_required)


@router.get("", response=PageOut[ScrapeJobOut])
def scrape_job_list(request: HttpRequest, page: Query[PageIn]) -> Any:
    """Scrape jobs, newest first."""
    return keyset_paginate(selectors.scrape_job_list(), keys=["-id"], page=page)


@router.post("", response={201: ScrapeJobDetailOut})
def scrape_job_create(request: HttpRequest, payload: ScrapeJobIn) -> Any:
    """Queue a crawl of `url` into the album named `album_name`; watch it at
    /api/scrape-jobs/{id}."""
    from scraping.services import scrape_job_start

    # One transaction: a job whose start failed is never left queued for nobody.
    with transaction.atomic():
        job = ScrapeJob.objects.create(
            start_url=payload.url,
            album_name=payload.album_name,
            created_by=request.user,
            **payload.options(),
        )
        scrape_job_start(job=job)
    return Status(201, selectors.scrape_job_get(job_id=job.pk, detail=True))


@router.get("/{int:job_id}", response=ScrapeJobDetailOut)
def scrape_job_detail(request: HttpRequest, job_id: int) -> Any:
    """A job's progress, counts, options and its last 50 crawl log entries."""
    return selectors.scrape_job_get(job_id=job_id, detail=True)


@router.delete("/{int:job_id}", response=ScrapeJobCleanupOut)
def scrape_job_delete(request: HttpRequest, job_id: int) -> Any:
    """Clean up an ended job: delete its album with the images no other album
    holds, then the job and its log. 409 while it is queued or running."""
    job = selectors.scrape_job_get(job_id=job_id)
    return scrape_job_cleanup(job=job)


@router.get("/{int:job_id}/log", response=PageOut[CrawlLogEntryOut])
def scrape_job_log(
    request: HttpRequest,
    job_id: int,
    filters: Query[CrawlLogFilterIn],
    page: Query[PageIn],
) -> Any:
    """The job's crawl log in crawl order: every URL, what happened and why."""
    job = selectors.scrape_job_get(job_id=job_id)
    entries = selectors.crawl_log(job=job, kind=filters.kind, outcome=filters.outcome)
    return keyset_paginate(entries, keys=["id"], page=page)


@router.post("/{int:job_id}/cancel", response=ScrapeJobDetailOut)
def scrape_job_cancel(request: HttpRequest, job_id: int) -> Any:
    """Stop a job: at once if queued, within seconds if running."""
    job = selectors.scrape_job_get(job_id=job_id)
    if not run_request_cancel(job):
        raise ApiError(409, f"Scrape job {job_id} already ended ({job.status}).")
    return selectors.scrape_job_get(job_id=job_id, detail=True)
