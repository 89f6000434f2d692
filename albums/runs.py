"""The body of an upload run: the worker ingests many files with progress.

The files are either staged uploads (albums.services.upload_run_create) or a
folder on the worker's machine (albums.services.folder_import_create, the
`import_images` command). Staged files live in storage under
`staging/uploads/<batch>/<n>` (names we make; the user's filename is kept only
for display). The worker expands zip archives, ingests every entry through
`image_ingest`, records a result per entry and checkpoints after each one, so
a re-delivered task resumes where the last one stopped instead of starting
over. Files beside a folder's images go to the sidecar readers the upper apps
register (a `.txt` caption: albums.extensions).
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage

from albums.extensions import read_sidecars
from albums.ingest import EXTENSIONS, safe_display_name
from albums.models import SourceKind, UploadRun
from albums.services import (
    NearDuplicatePolicy,
    image_ingest,
    near_duplicate_policy,
)
from imagineer_project.runs import run_checkpoint

logger = logging.getLogger(__name__)

ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class Entry:
    """One image to ingest: a staged file, a member of a staged zip, or a file
    of an imported folder (`path`: its sidecars are read too)."""

    name: str
    read: Any  # () -> bytes, raising ValueError with a reason
    path: Path | None = None


def upload_run_execute(run: UploadRun) -> str:
    """The body of an upload run (see run_execute): ingest every entry,
    resuming after a crash where the last attempt stopped."""
    if run.source_folder:
        entries = list(_folder_entries(Path(run.source_folder)))
    else:
        entries = list(_entries(run.staged_files))
    results = list(run.results)
    policy = near_duplicate_policy(run.near_duplicates)
    run_checkpoint(
        run,
        done=len(results),
        total=len(entries),
        message=f"Ingesting {len(entries)} image(s)",
    )
    for index in range(len(results), len(entries)):
        entry = entries[index]
        results.append(_ingest_entry(entry, run, policy))
        UploadRun.objects.filter(pk=run.pk).update(results=results, **_counts(results))
        run_checkpoint(
            run, done=index + 1, message=f"{index + 1}/{len(entries)}: {entry.name}"
        )
    counts = _counts(results)
    summary = (
        f"{counts['created_count']} created, {counts['duplicate_count']} "
        f"duplicate, {counts['rejected_count']} rejected"
    )
    if run.source_folder:
        summary += f", {counts['sidecar_count']} from sidecar files"
    return summary


def _ingest_entry(
    entry: Entry, run: UploadRun, policy: NearDuplicatePolicy | None = None
) -> dict[str, Any]:
    try:
        data = entry.read()
    except ValueError as exc:
        return {
            "filename": entry.name,
            "status": "rejected",
            "code": "unreadable",
            "reason": str(exc),
        }
    result = image_ingest(
        data=data,
        filename=entry.name,
        source_kind=SourceKind.UPLOAD,
        album=run.album,
        uploaded_by=run.uploaded_by,
        near_duplicates=policy,
    )
    outcome = result.as_dict()
    if entry.path is not None and result.image is not None:
        outcome["sidecars"] = read_sidecars(result.image, entry.path)
    return outcome


def _counts(results: list[dict[str, Any]]) -> dict[str, int]:
    counts = {
        f"{status}_count": sum(1 for r in results if r["status"] == status)
        for status in ("created", "duplicate", "rejected")
    }
    counts["sidecar_count"] = sum(r.get("sidecars", 0) for r in results)
    return counts


def image_files(root: Path) -> Iterator[Path]:
    """Image files under root, sorted, skipping hidden files and folders. The
    order is the resume point of a folder import: it never changes between
    attempts over the same tree."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in EXTENSIONS:
            yield path


def _folder_entries(root: Path) -> Iterator[Entry]:
    if not root.is_dir():
        raise FileNotFoundError(f"The folder {root} is not there any more.")
    for path in image_files(root):
        name = str(path.relative_to(root))
        yield Entry(name, lambda path=path: _read_file(path), path)


def _read_file(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(settings.IMAGINEER_MAX_UPLOAD_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"Could not read the file: {exc.strerror}") from exc


def _entries(staged: list[dict[str, str]]) -> Iterator[Entry]:
    for item in staged:
        with default_storage.open(item["key"], "rb") as fh:
            head = fh.read(4)
        if head == ZIP_MAGIC:
            try:
                yield from list(_zip_entries(item))
            except ValueError as exc:  # the whole archive is one rejected entry
                yield Entry(item["name"], _raiser(str(exc)))
        else:
            yield Entry(item["name"], lambda key=item["key"]: _read_staged(key))


def _raiser(reason: str) -> Any:
    def read() -> bytes:
        raise ValueError(reason)

    return read


def _read_staged(key: str) -> bytes:
    with default_storage.open(key, "rb") as fh:
        return fh.read(settings.IMAGINEER_MAX_UPLOAD_BYTES + 1)


def _zip_entries(item: dict[str, str]) -> Iterator[Entry]:
    """Image members of a zip, in archive order; other members are skipped.

    Each member is read through a cap, so a zip bomb cannot exhaust memory: its
    declared size is not trusted.
    """
    archive = _open_zip(item)
    members = [m for m in archive.infolist() if _is_image_member(m)]
    if len(members) > settings.IMAGINEER_MAX_ZIP_MEMBERS:
        raise ValueError(
            f"{item['name']} holds more than "
            f"{settings.IMAGINEER_MAX_ZIP_MEMBERS} images."
        )
    for member in members:
        name = f"{item['name']}/{safe_display_name(member.filename)}"
        yield Entry(name, lambda m=member: _read_member(archive, m))


def _open_zip(item: dict[str, str]) -> zipfile.ZipFile:
    # Kept open (storage files are seekable) while the run reads its members.
    fh = default_storage.open(item["key"], "rb")
    try:
        return zipfile.ZipFile(fh)
    except zipfile.BadZipFile as exc:
        fh.close()
        raise ValueError(f"{item['name']} is not a readable zip archive") from exc


def _is_image_member(member: zipfile.ZipInfo) -> bool:
    path = PurePosixPath(member.filename.replace("\\", "/"))
    hidden = any(part.startswith((".", "__MACOSX")) for part in path.parts)
    return not member.is_dir() and not hidden and path.suffix.lower() in EXTENSIONS


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes:
    limit = settings.IMAGINEER_MAX_UPLOAD_BYTES
    try:
        with archive.open(member) as stream:
            data = stream.read(limit + 1)
    except (zipfile.BadZipFile, OSError, NotImplementedError) as exc:
        raise ValueError(f"Could not extract from the archive: {exc}") from exc
    if len(data) > limit:
        raise ValueError(f"The extracted file exceeds {limit:,} bytes.")
    return data
