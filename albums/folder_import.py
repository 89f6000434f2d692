"""Import a folder tree of images into an album (used by `manage.py import_images`).

Files beside an image are offered to the sidecar readers the upper apps
register (albums.extensions): labeling reads a `.txt` of the same stem as the
image's caption. Re-running the import is harmless: images dedupe by content
and the readers record the same caption once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from albums.extensions import read_sidecars
from albums.ingest import EXTENSIONS
from albums.models import Album, SourceKind
from albums.services import IngestResult, image_ingest


@dataclass
class FolderImportReport:
    created: int = 0
    duplicate: int = 0
    rejected: list[IngestResult] = field(default_factory=list)
    captions: int = 0


def image_files(root: Path) -> Iterator[Path]:
    """Image files under root, sorted, skipping hidden files and folders."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in EXTENSIONS:
            yield path


def folder_import(
    *,
    root: Path,
    album: Album,
    uploaded_by: object = None,
    on_progress: Callable[[Path, IngestResult], None] | None = None,
) -> FolderImportReport:
    report = FolderImportReport()
    for path in image_files(root):
        result = _import_one(path, root, album, uploaded_by)
        if result.status == "rejected":
            report.rejected.append(result)
        else:
            setattr(report, result.status, getattr(report, result.status) + 1)
            report.captions += _import_sidecar(path, result)
        if on_progress:
            on_progress(path, result)
    return report


def _import_one(
    path: Path, root: Path, album: Album, uploaded_by: object
) -> IngestResult:
    limit = settings.IMAGINEER_MAX_UPLOAD_BYTES
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    return image_ingest(
        data=data,
        filename=str(path.relative_to(root)),
        source_kind=SourceKind.UPLOAD,
        album=album,
        uploaded_by=uploaded_by,
    )


def _import_sidecar(path: Path, result: IngestResult) -> int:
    if result.image is None:
        return 0
    return read_sidecars(result.image, path)
