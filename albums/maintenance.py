"""Maintenance passes this app registers (imagineer_project.maintenance.registry),
and what deleting albums removes (their confirmation pages say it).

`purge-staged-uploads`: a bulk upload stages its files under
`staging/uploads/<batch>/<n>` and its run deletes them when it ends
(albums.services.upload_run_discard). When that clean-up failed, or the worker
died and the reaper ended the run, the files stay; this pass deletes the
staged files of every ended run, and those no run names once they are older
than STORAGE_ORPHAN_GRACE_HOURS (a request stages its files before its run's
row commits). Only through default_storage, so it works on S3 too. An ended
upload is never retried (UploadRun.retry_refusal: its files are gone), so an
ended run's files are never needed again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import Count, Sum
from django.utils import timezone

from albums.models import AlbumImage, Image, UploadRun
from imagineer_project.maintenance.registry import PassReport, register_pass
from imagineer_project.runs import BaseRun

logger = logging.getLogger(__name__)

STAGING = "staging/uploads"


def _staged_keys() -> Iterator[str]:
    """Every file under staging/uploads/<batch>/ in default storage."""
    try:
        batches, _files = default_storage.listdir(STAGING)
    except FileNotFoundError:  # local storage before the first upload
        return
    for batch in sorted(batches):
        _dirs, files = default_storage.listdir(f"{STAGING}/{batch}")
        for name in sorted(files):
            yield f"{STAGING}/{batch}/{name}"


def _owners(keys: set[str]) -> dict[str, bool]:
    """For each of `keys` an upload run names: whether that run has ended."""
    found: dict[str, bool] = {}
    runs = UploadRun.objects.filter(source_folder="").values_list(
        "status", "staged_files"
    )
    for status, staged in runs.iterator(chunk_size=500):
        for item in staged:
            if item["key"] in keys:
                found[item["key"]] = status in BaseRun.TERMINAL
    return found


def staged_uploads_purge(report: PassReport) -> None:
    """Delete the staged files of ended upload runs, and staged files no run
    names past the grace period; a running or queued run's files stay."""
    present = set(_staged_keys())
    report.facts["staged_files"] = len(present)
    if not present:
        return  # the usual case: every run cleaned up after itself
    owners = _owners(present)
    grace = timezone.now() - timedelta(hours=settings.STORAGE_ORPHAN_GRACE_HOURS)
    for done, key in enumerate(sorted(present)):
        report.progress(done, len(present), key)
        ended = owners.get(key)
        if ended is False:
            continue  # its run is queued or running and reads it
        if ended is None and default_storage.get_modified_time(key) >= grace:
            continue  # perhaps a request still creating its run
        what = "staged file" if ended else "staged file (no upload run)"
        _delete(report, what, key)
    report.progress(len(present), len(present), "Done")


def _delete(report: PassReport, what: str, key: str) -> None:
    size = default_storage.size(key)
    if not report.dry_run:
        try:
            default_storage.delete(key)
        except OSError as exc:
            report.problem(f"Could not delete {key}: {type(exc).__name__}")
            return
    report.remove(what, key, size=size)


# --- deleting albums ----------------------------------------------------------------


def albums_delete_preview(*, album_ids: Iterable[int]) -> dict[str, Any]:
    """What deleting these albums (albums.services.album_delete, one after
    another) removes: the images only they hold, with the bytes of their files
    (thumbnails go too), and how many of their images stay because another
    album holds them."""
    album_ids = list(album_ids)
    members = AlbumImage.objects.filter(album_id__in=album_ids).values("image_id")
    elsewhere = AlbumImage.objects.exclude(album_id__in=album_ids).values("image_id")
    images = Image.objects.filter(pk__in=members)
    going = images.exclude(pk__in=elsewhere).aggregate(n=Count("pk"), size=Sum("bytes"))
    deleted = going["n"] or 0
    return {
        "images_deleted": deleted,
        "bytes_deleted": going["size"] or 0,
        "images_kept": images.count() - deleted,
    }


register_pass(
    "purge-staged-uploads",
    staged_uploads_purge,
    minutes=60,
    description="Staged files of bulk uploads that have ended (their own clean-up "
    "failed or their worker died), and staged files no upload names after "
    "STORAGE_ORPHAN_GRACE_HOURS.",
)
