"""Reads for scrape jobs and their crawl logs, shared by the API and the admin."""

from __future__ import annotations

import logging
from typing import Any

from albums.models import Album, AlbumImage
from scraping.models import CrawlLogEntry, ScrapeJob

logger = logging.getLogger(__name__)

RECENT_LOG = 50


def scrape_job_rows() -> Any:
    """Jobs with their album (a job's page shows both)."""
    return ScrapeJob.objects.select_related("album")


def crawl_log(
    *, job: ScrapeJob, kind: str | None = None, outcome: str | None = None
) -> Any:
    """The job's crawl log, filtered; paginate on id (the crawllog_job index)."""
    entries = CrawlLogEntry.objects.filter(job=job)
    if kind:
        entries = entries.filter(kind=kind)
    if outcome:
        entries = entries.filter(outcome=outcome)
    return entries


def crawl_log_recent(*, job: ScrapeJob, limit: int = RECENT_LOG) -> list[CrawlLogEntry]:
    """The job's last `limit` entries, newest first: a backward scan of the
    crawllog_job index that stops after `limit` rows."""
    return list(CrawlLogEntry.objects.filter(job=job).order_by("-id")[:limit])


def scrape_job_cleanup_preview(*, job: ScrapeJob) -> dict[str, int]:
    """What scrape_job_cleanup would do now: how many of the album's images it
    would delete (no other album holds them) and keep."""
    if job.album_id is None:
        return {"images_deleted": 0, "images_kept": 0}
    if job.album.source_kind != Album.Kind.SCRAPE:
        # A person's own album stays; only what the job put in goes.
        put_in = images_put_in(job)
        elsewhere = (
            AlbumImage.objects.filter(image_id__in=put_in)
            .exclude(album_id=job.album_id)
            .values("image_id")
            .distinct()
            .count()
        )
        return {"images_deleted": len(put_in) - elsewhere, "images_kept": elsewhere}
    members = AlbumImage.objects.filter(album_id=job.album_id)
    others = AlbumImage.objects.exclude(album_id=job.album_id).values("image_id")
    only_here = members.exclude(image_id__in=others).count()
    return {"images_deleted": only_here, "images_kept": members.count() - only_here}


def images_put_in(job: ScrapeJob) -> list[int]:
    """The images `job` added to its album: saved or linked by its crawl and
    joined to the album after the job was made (an image the album already
    held stays). Empty once the crawl log was purged."""
    logged = job.log.filter(image__isnull=False).values("image_id")
    return list(
        AlbumImage.objects.filter(
            album_id=job.album_id, image_id__in=logged, created__gte=job.created
        ).values_list("image_id", flat=True)
    )
