"""JSON API for scrape jobs (/api/scrape-jobs): start, watch, cancel, clean up.

Staff only, every endpoint. Handlers call a selector or a service and return a
schema; expected failures are domain errors, shaped once at the API root. The
list, detail, cancel and retry endpoints are every run kind's
(imagineer_project.run_api).
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Status

from albums.selectors import album_get
from imagineer_project.errors import error_responses
from imagineer_project.pagination import PageIn, PageOut, keyset_paginate
from imagineer_project.permissions import staff_required
from imagineer_project.run_api import RunRoutes, add_run_routes
from scraping import selectors, services
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


JOBS = RunRoutes(
    model=ScrapeJob,
    what="Scrape job",
    location="/api/scrape-jobs",
    list_out=ScrapeJobOut,
    detail_out=ScrapeJobDetailOut,
    detail=selectors.scrape_job_rows,
    cancel_doc="Stop a job: at once if queued, within seconds if running.",
    retry_doc="Run a failed or cancelled job again on the same row: it crawls "
    "again from its start URL into its album (images it saved are recognised "
    "as duplicates).",
)


@router.post("", response={201: ScrapeJobDetailOut})
@error_responses(404, 429)
def scrape_job_create(request: HttpRequest, payload: ScrapeJobIn) -> Any:
    """Queue a crawl of `url` into the album named `album_name`, or into the
    existing album `album_id`; watch it at /api/scrape-jobs/{id}. 422 names
    every bad field (a start URL the crawler would refuse, such as a private
    address, included); 404 when `album_id` names no album."""
    album = None
    if payload.album_id is not None:  # 404 when it names no album
        album = album_get(user=request.user, ref=payload.album_id)
    job = services.scrape_job_create(
        url=payload.url,
        album_name=payload.album_name or "",
        album=album,
        created_by=request.user,
        rate_limited=True,
        **payload.options(),
    )
    return Status(201, JOBS.get(job.pk))


# The same path as the shared detail route, so the same parameter name: one URL
# pattern serves GET and DELETE (two patterns would send DELETE to the first).
@router.delete("/{int:run_id}", response=ScrapeJobCleanupOut)
def scrape_job_delete(request: HttpRequest, run_id: int) -> Any:
    """Clean up an ended job: delete its album with the images no other album
    holds, then the job and its log. 409 while it is queued or running."""
    return scrape_job_cleanup(job=JOBS.get(run_id))


@router.get("/{int:job_id}/log", response=PageOut[CrawlLogEntryOut])
def scrape_job_log(
    request: HttpRequest,
    job_id: int,
    filters: Query[CrawlLogFilterIn],
    page: Query[PageIn],
) -> Any:
    """The job's crawl log in crawl order: every URL, what happened and why.
    Empty once purged, CRAWL_LOG_RETENTION_DAYS after the job ended (the job's
    counts stay)."""
    entries = selectors.crawl_log(
        job=JOBS.get(job_id), kind=filters.kind, outcome=filters.outcome
    )
    return keyset_paginate(entries, keys=["id"], page=page)


add_run_routes(router, JOBS)
