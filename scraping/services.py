"""Writes for scrape jobs: start, retry."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from albums.models import Album
from albums.services import album_create
from imagineer_project.runs import run_enqueue
from scraping.models import OPTION_FIELDS, ScrapeJob


def scrape_job_start(*, job: ScrapeJob, enqueue: bool = True) -> ScrapeJob:
    """Give a new job its album (found or created by name) and queue it."""
    with transaction.atomic():
        if job.album_id is None:
            job.album = _scrape_album(job)
            job.save(update_fields=["album"])
        if enqueue:
            run_enqueue(job)
    return job


def _scrape_album(job: ScrapeJob) -> Album:
    """Reuse a scrape album of that name, never a manual or upload one: cleaning
    up a job deletes its album, which must not take a person's uploads with it."""
    existing = (
        Album.objects.filter(name=job.album_name.strip(), source_kind=Album.Kind.SCRAPE)
        .order_by("id")
        .first()
    )
    return existing or album_create(
        name=job.album_name, source_kind=Album.Kind.SCRAPE, created_by=job.created_by
    )


def scrape_job_create(
    *,
    url: str,
    album_name: str,
    created_by: Any = None,
    enqueue: bool = True,
    **options: Any,
) -> ScrapeJob:
    job = ScrapeJob.objects.create(
        start_url=url,
        album_name=album_name.strip(),
        created_by=created_by if getattr(created_by, "pk", None) else None,
        **options,
    )
    return scrape_job_start(job=job, enqueue=enqueue)


def scrape_job_retry(*, job: ScrapeJob, created_by: Any = None) -> ScrapeJob:
    """A new job with the same options (the old one keeps its log)."""
    fields = ("start_url", "album_name", *OPTION_FIELDS)
    options = {name: getattr(job, name) for name in fields}
    retry = ScrapeJob.objects.create(
        **options,
        album=job.album,
        created_by=created_by if getattr(created_by, "pk", None) else job.created_by,
    )
    return scrape_job_start(job=retry)
