"""Cleaning up a finished scrape job: its album, the images only that album
holds, and the job with its crawl log. Shared by the admin and the API.

A job that filled a person's own album ("Scrape into" on an upload or manual
album) never deletes that album: it takes out only what the job put in."""

from __future__ import annotations

import logging

from django.db import transaction

from albums.models import Album
from albums.services import album_delete, album_release_images
from imagineer_project.errors import Conflict
from imagineer_project.runs import BaseRun
from scraping.models import ScrapeJob
from scraping.selectors import images_put_in

logger = logging.getLogger(__name__)


class ScrapeJobBusy(Conflict):
    """The job (or another job filling its album) has not ended yet."""

    code = "job_active"


def scrape_job_cleanup(*, job: ScrapeJob) -> dict[str, int]:
    """Delete an ended job's album with the images no other album holds (files
    and thumbnails too), then the job itself; its crawl log goes with it
    (counted in `crawl_log_rows`).

    Refused while the job is queued or running, or while another job (a retry)
    is still filling the same album: deleting the album under a live crawl
    would orphan the images it is about to save.
    """
    with transaction.atomic():
        # The row lock makes a second, concurrent cleanup wait and then find
        # the job gone, rather than delete the album twice.
        locked = ScrapeJob.objects.select_for_update().filter(pk=job.pk).first()
        if locked is None:
            return {"images_deleted": 0, "images_kept": 0, "crawl_log_rows": 0}
        _check_ended(locked)
        counts = {"images_deleted": 0, "images_kept": 0}
        if locked.album is not None and locked.album.source_kind == Album.Kind.SCRAPE:
            counts = album_delete(album=locked.album)
        elif locked.album is not None:
            counts = album_release_images(
                album=locked.album, image_ids=images_put_in(locked)
            )
        # The log cascades in one DELETE (nothing refers to its rows).
        counts["crawl_log_rows"] = locked.log.count()
        locked.delete()
    logger.info("Cleaned up scrape job %s: %s", job.pk, counts)
    return counts


def _check_ended(job: ScrapeJob) -> None:
    if job.status in BaseRun.ACTIVE:
        raise ScrapeJobBusy(
            f"Scrape job {job.pk} is {job.status}; cancel it and wait for it "
            "to end before cleaning up."
        )
    if job.album_id is None:
        return
    filling = (
        ScrapeJob.objects.filter(album_id=job.album_id, status__in=BaseRun.ACTIVE)
        .exclude(pk=job.pk)
        .values_list("pk", flat=True)
        .first()
    )
    if filling is not None:
        raise ScrapeJobBusy(
            f"Scrape job {filling} is still filling the same album; wait for it "
            "to end before cleaning up."
        )
