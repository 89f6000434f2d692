"""The parts of default storage this app owns, for reconcile-storage
(imagineer_project.maintenance.registry)."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings

from albums.models import Image, UploadRun
from albums.services import thumbnail_key
from imagineer_project.maintenance.registry import register_storage_owner
from imagineer_project.runs import BaseRun

# Rows are streamed in chunks of this many: a library of any size is one
# pass over the table without holding it in memory.
CHUNK = 2000


def image_keys() -> Iterator[str]:
    """Every original an Image row references."""
    yield from Image.objects.values_list("file", flat=True).iterator(chunk_size=CHUNK)


def thumbnail_keys() -> Iterator[str]:
    """Every thumbnail an image may have, at every configured size (they are
    made on demand, so not all of them exist)."""
    sizes = settings.IMAGINEER_THUMBNAIL_SIZES
    shas = Image.objects.values_list("sha256", flat=True).iterator(chunk_size=CHUNK)
    for sha in shas:
        for size in sizes:
            yield thumbnail_key(sha, size)


def staged_upload_keys() -> Iterator[str]:
    """The staged files of upload runs still queued or running (an ended
    run's staged files are removed as it ends)."""
    active = UploadRun.objects.filter(status__in=BaseRun.ACTIVE)
    for staged in active.values_list("staged_files", flat=True).iterator():
        for item in staged or ():
            yield item["key"]


register_storage_owner("images/", image_keys, description="images (Image.file)")
register_storage_owner(
    "thumbnails/",
    thumbnail_keys,
    description="thumbnails of images (made again on demand)",
    report_missing=False,
)
register_storage_owner(
    "staging/uploads/",
    staged_upload_keys,
    description="files staged for upload runs not yet ended",
    report_missing=False,
)
