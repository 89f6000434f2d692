"""The body of an upload run: the worker ingests many files with progress.

The files are either staged uploads (albums.services.upload_run_create) or a
folder on the worker's machine (albums.services.folder_import_create, the
`import_images` command). Staged files live in storage under
`staging/uploads/<batch>/<n>` (names we make; the user's filename is kept only
for display). The worker expands zip archives, ingests every entry through
`image_prepare` and `image_store` in batches (files durable first, then the
batch's rows in one transaction), records a result per entry and checkpoints
after each batch, so a re-delivered task resumes where the last one stopped
instead of starting over. Files beside a folder's images go to the sidecar
readers the upper apps register (a `.txt` caption: albums.extensions).

Every file the run does not import has a result with a reason: hidden files
and folders, archive members whose path climbs out (`..`), files that are no
image (the content decides, not the extension), and the files left when the
run has spent its CPU budget (IMAGINEER_UPLOAD_RUN_CPU_SECONDS). Results name
a file by its path inside the folder or archive.
"""

from __future__ import annotations

import logging
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count, F

from albums.extensions import read_sidecars
from albums.ingest import EXTENSIONS, InspectedImage, safe_display_name
from albums.models import Image, SourceKind, UploadFile, UploadRun
from albums.services import (
    SIDECAR_ALONE,
    IngestBatch,
    IngestResult,
    NearDuplicatePolicy,
    forget_deleted_images,
    image_prepare,
    image_store,
    near_duplicate_policy,
)
from imagineer_project.lib.storage import durable_batch
from imagineer_project.runs import (
    RunCancelled,
    RunWaiting,
    run_checkpoint,
    run_chunk_execute,
    run_chunks,
    run_chunks_enqueue,
    run_chunks_in_pool,
    run_finish,
)

logger = logging.getLogger(__name__)

ZIP_MAGIC = b"PK\x03\x04"
# Files are made durable with one storage sync, and their rows (images, album
# links, results, the run's counts and progress) written in one transaction,
# this many at a time; a cancel is noticed after each batch.
ROW_BATCH = 16
# A run of fewer files than this is one chunk, ingested by the run's own task.
CHUNK_MIN_FILES = 32


@dataclass(frozen=True)
class Entry:
    """One image to ingest: a staged file, a member of a staged zip, or a file
    of an imported folder (`path`: its sidecars are read too)."""

    name: str
    read: Any  # () -> bytes, raising ValueError with a reason
    path: Path | None = None
    # Not to be read: the (code, reason) it is reported with instead.
    skip: tuple[str, str] | None = None
    # A staged upload's sidecar files, {".txt": their text}: read like a
    # folder's (see _staged_sidecars).
    sidecars: dict[str, str] | None = None


def upload_run_execute(run: UploadRun, *, pool: Any = None) -> str:
    """The body of an upload run on this machine (the `import_images` command's
    foreground run): ingest every file not yet recorded, resuming after a
    crash where the last attempt stopped; with a process `pool`, spread over
    it in chunks as the worker spreads a run over its cluster."""
    entries = run_entries(run)
    total = len(entries)
    run_checkpoint(
        run,
        total=total,
        message=f"Ingesting {total} image(s)",
        fields=_recount(run),
    )
    chunks = run_chunks(total, min_size=CHUNK_MIN_FILES)
    if pool is None or len(chunks) <= 1:
        budget = settings.IMAGINEER_UPLOAD_RUN_CPU_SECONDS
        upload_chunk_ingest(run, entries, 0, total, budget=budget)
    else:
        run_chunks_in_pool(run, pool, upload_chunk_execute, _chunks_left(run, chunks))
    run.refresh_from_db()
    return upload_run_summary(run)


def _chunks_left(
    run: UploadRun, chunks: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The chunks that still have a file with no row."""
    done = set(run.files.values_list("position", flat=True))
    return [(a, b) for a, b in chunks if not done.issuperset(range(a, b))]


def upload_run_spread(run: UploadRun) -> str:
    """The body of an upload run on the worker: its files split into chunks,
    each a sub-task (albums.tasks.ingest_upload_chunk) on the general cluster,
    so one big upload keeps every worker process busy. The body frees its
    worker (RunWaiting); the chunk that records the last file ends the run. A
    run of one chunk is ingested here. Resumed, it queues only the chunks with
    files left."""

    entries = run_entries(run)
    total = len(entries)
    run_checkpoint(
        run, total=total, message=f"Ingesting {total} image(s)", fields=_recount(run)
    )
    chunks = run_chunks(total, min_size=CHUNK_MIN_FILES)
    if len(chunks) <= 1:
        upload_chunk_ingest(
            run, entries, 0, total, budget=settings.IMAGINEER_UPLOAD_RUN_CPU_SECONDS
        )
        run.refresh_from_db()
        return upload_run_summary(run)
    left = _chunks_left(run, chunks)
    if not left:
        return upload_run_summary(run)
    message = f"Ingesting {total} image(s) in {len(chunks)} parallel chunks"
    # The chunks may all finish before this line returns (Q_SYNC runs them
    # inline), so the body waits only if the run is still running then.
    run_chunks_enqueue(run, "albums.tasks.ingest_upload_chunk", left)
    raise RunWaiting(message)


def _recount(run: UploadRun) -> dict[str, int]:
    """Progress and counts from the rows a run has (one grouped query): what an
    attempt starts from, whatever the last one managed to write."""
    by_status = dict(run.files.values_list("status").annotate(n=Count("id")).order_by())
    counts = {
        f"{status}_count": by_status.get(status, 0)
        for status in ("created", "duplicate", "rejected")
    }
    return {"progress_done": sum(by_status.values()), **counts}


def upload_chunk_execute(run_id: int, start: int, stop: int) -> str:
    """Ingest files start..stop-1 of a running upload run (a chunk sub-task);
    delivered twice, or beside another copy of itself, every file is still
    recorded once. Ends the run when its last file is recorded."""

    def ingest(run: UploadRun) -> None:
        entries = run_entries(run)
        total = max(len(entries), 1)
        # The run's CPU budget, shared by its chunks in proportion to their files.
        share = settings.IMAGINEER_UPLOAD_RUN_CPU_SECONDS * (stop - start) / total
        upload_chunk_ingest(run, entries, start, stop, budget=share)

    return run_chunk_execute(UploadRun, run_id, ingest)


def upload_chunk_ingest(
    run: UploadRun, entries: list[Entry], start: int, stop: int, *, budget: float
) -> None:
    """Ingest the entries start..stop-1 that have no row yet, ROW_BATCH files at
    a time: each batch's files are decoded and checked, written and made
    durable together (one storage sync, see durable_batch), and only then are
    its image rows, album links, result rows, counts and progress committed in
    one transaction. So no row ever names a file a power cut could lose, and a
    crash loses a whole batch or nothing. Raises RunCancelled after a batch
    once a cancel was asked for."""
    done = set(
        run.files.filter(position__gte=start, position__lt=stop).values_list(
            "position", flat=True
        )
    )
    todo = [n for n in range(start, stop) if n not in done]
    policy = near_duplicate_policy(run.near_duplicates)
    spent = 0.0
    for a in range(0, len(todo), ROW_BATCH):
        batch = todo[a : a + ROW_BATCH]
        with durable_batch():
            prepared = []
            for index in batch:
                started = time.thread_time()
                if spent > budget:
                    prepared.append(_over_budget(entries[index], index, len(entries)))
                else:
                    prepared.append(_prepare(entries[index]))
                spent += time.thread_time() - started
        started = time.thread_time()
        with transaction.atomic():
            shared = IngestBatch(run.album, run.uploaded_by)
            shared.read_known(p.sha256 for p in prepared if not isinstance(p, dict))
            rows = [
                _register(run, n, entries[n], item, policy, shared, first=n == todo[0])
                for n, item in zip(batch, prepared, strict=True)
            ]
            shared.flush()
            if policy.replaced:
                forget_deleted_images(row for row, _ in rows)
            _record(run, rows)
        spent += time.thread_time() - started
        _checkpoint_after(run, entries[batch[-1]].name)


def _row(run: UploadRun, position: int, outcome: dict[str, Any]) -> UploadFile:
    return UploadFile(
        run=run,
        position=position,
        filename=outcome["filename"][:1000],
        status=outcome["status"],
        image_id=outcome.get("image_id"),
        code=outcome.get("code", ""),
        reason=outcome.get("reason", "")[:1000],
        warnings=outcome.get("warnings", []),
    )


def _record(run: UploadRun, batch: list[tuple[UploadFile, int]]) -> None:
    """Write a batch of rows once: rows another copy of the chunk wrote first
    are left out, and the counts grow by the rows written here only, in the
    same transaction, so they always equal the rows."""
    positions = [row.position for row, _ in batch]
    while True:
        try:
            with transaction.atomic():
                taken = set(
                    UploadFile.objects.filter(
                        run=run, position__in=positions
                    ).values_list("position", flat=True)
                )
                new = [(r, s) for r, s in batch if r.position not in taken]
                UploadFile.objects.bulk_create([r for r, _ in new])
                changes = _increments(new)
                UploadRun.objects.filter(pk=run.pk).update(**changes)
            break
        except IntegrityError:  # another copy wrote some in between: again
            continue


def _checkpoint_after(run: UploadRun, last: str) -> None:
    """After a batch is committed: end the run at its last file, else report
    progress (and notice a cancel)."""
    run.refresh_from_db(fields=["status", "progress_done", "progress_total"])
    total = run.progress_total
    if run.status == UploadRun.Status.SUCCEEDED:
        return  # another chunk recorded the last file: its summary stays
    if run.status != UploadRun.Status.RUNNING:
        raise RunCancelled  # ended meanwhile (cancelled, or failed): stop here
    if run.progress_done >= total:
        run_finish(run, UploadRun.Status.SUCCEEDED, message=upload_run_summary(run))
        return
    run_checkpoint(run, message=f"{run.progress_done}/{total}: {last}")


def _increments(new: list[tuple[UploadFile, int]]) -> dict[str, Any]:
    changes: dict[str, Any] = {"progress_done": F("progress_done") + len(new)}
    for status in ("created", "duplicate", "rejected"):
        count = sum(1 for r, _ in new if r.status == status)
        if count:
            changes[f"{status}_count"] = F(f"{status}_count") + count
    sidecars = sum(s for _, s in new)
    if sidecars:
        changes["sidecar_count"] = F("sidecar_count") + sidecars
    return changes


def upload_run_summary(run: UploadRun) -> str:
    run.refresh_from_db(
        fields=["created_count", "duplicate_count", "rejected_count", "sidecar_count"]
    )
    summary = (
        f"{run.created_count} created, {run.duplicate_count} "
        f"duplicate, {run.rejected_count} rejected"
    )
    if run.source_folder or run.sidecar_count:
        summary += f", {run.sidecar_count} from sidecar files"
    return summary


def run_entries(run: UploadRun) -> list[Entry]:
    """Every file of the run in its fixed order (a file's place is its row's
    position: the same on every attempt and in every chunk)."""
    if run.source_folder:
        return list(_folder_entries(Path(run.source_folder)))
    return list(_entries(run.staged_files))


def _over_budget(entry: Entry, index: int, total: int) -> dict[str, Any]:
    budget = settings.IMAGINEER_UPLOAD_RUN_CPU_SECONDS
    return {
        "filename": entry.name,
        "status": "rejected",
        "code": "budget",
        "reason": f"Not imported: the run spent its {budget:,} s of processing "
        f"(IMAGINEER_UPLOAD_RUN_CPU_SECONDS) before file {index + 1} of {total}. "
        "Upload the files left in another run.",
    }


def first_after_crash(run: UploadRun, outcome: dict[str, Any]) -> bool:
    """Whether the first file of a resumed attempt, found as a duplicate, is the
    image this run stored just before it crashed (its result unrecorded): an
    image made since the run was created, by its uploader, already in its
    album. Counted as created, not as a duplicate."""
    if run.attempts < 2 or outcome.get("status") != "duplicate":
        return False
    image = Image.objects.filter(pk=outcome.get("image_id")).first()
    return (
        image is not None
        and image.created >= run.created
        and image.uploaded_by_id == run.uploaded_by_id
    )


def _prepare(entry: Entry) -> dict[str, Any] | InspectedImage:
    """A batch's first step for one entry: its outcome when it is not to be
    stored (skipped, unreadable, rejected), else its inspected image, whose
    files are written (durable when the batch ends)."""
    if entry.skip is not None:
        code, reason = entry.skip
        return {
            "filename": entry.name,
            "status": "rejected",
            "code": code,
            "reason": reason,
        }
    try:
        data = entry.read()
    except ValueError as exc:
        return {
            "filename": entry.name,
            "status": "rejected",
            "code": "unreadable",
            "reason": str(exc),
        }
    prepared = image_prepare(data=data, filename=entry.name)
    if isinstance(prepared, IngestResult):
        return {**prepared.as_dict(), "filename": entry.name}
    return prepared


def _register(
    run: UploadRun,
    index: int,
    entry: Entry,
    prepared: dict[str, Any] | InspectedImage,
    policy: NearDuplicatePolicy,
    shared: IngestBatch,
    *,
    first: bool,
) -> tuple[UploadFile, int]:
    """A batch's second step for one entry, inside its transaction and after
    its files are durable: the image row and album link, the sidecars, and the
    entry's result row (with the number of sidecars read)."""
    if isinstance(prepared, dict):
        return _row(run, index, prepared), 0
    result = image_store(
        inspected=prepared,
        filename=safe_display_name(entry.name),
        source_kind=SourceKind.UPLOAD,
        album=run.album,
        uploaded_by=run.uploaded_by,
        near_duplicates=policy,
        files_stored=True,
        batch=shared,
    )
    outcome = {**result.as_dict(), "filename": entry.name}
    if first and first_after_crash(run, outcome):
        outcome["status"] = "created"  # ours, stored before the crash
    sidecars = 0
    if entry.path is not None and result.image is not None:
        sidecars = read_sidecars(result.image, entry.path)
    elif entry.sidecars and result.image is not None:
        sidecars = _staged_sidecars(result.image, entry.sidecars)
    return _row(run, index, outcome), sidecars


def _staged_sidecars(image: Image, sidecars: dict[str, str]) -> int:
    """Give an uploaded image's staged sidecar texts to the sidecar readers,
    which read files beside an image's path: written beside a stand-in path in
    a scratch folder, so an upload follows the folder import's rule exactly.
    The readers record each text once (by its digest), so a re-delivered run
    repeats nothing."""
    with tempfile.TemporaryDirectory(prefix="imagineer-sidecars-") as folder:
        stand_in = Path(folder) / "image.png"
        for suffix, text in sidecars.items():
            stand_in.with_suffix(suffix).write_text(text, encoding="utf-8")
        return read_sidecars(image, stand_in)


def _folder_entries(root: Path) -> Iterator[Entry]:
    """Every file under root, sorted (the order is the resume point of a folder
    import: it never changes between attempts over the same tree). A file
    beside an image with the same stem (a `.txt` caption) is the sidecar
    readers'; a hidden file or folder is one skipped entry; any other file is
    ingested, so the content decides whether it is an image."""
    if not root.is_dir():
        raise FileNotFoundError(f"The folder {root} is not there any more.")
    paths = sorted(root.rglob("*"))
    image_stems = {(p.parent, p.stem) for p in paths if p.suffix.lower() in EXTENSIONS}
    hidden: set[Path] = set()
    for path in paths:
        rel = path.relative_to(root)
        top_hidden = next(
            (i for i, part in enumerate(rel.parts) if part.startswith(".")), None
        )
        if top_hidden is not None:
            mark = Path(*rel.parts[: top_hidden + 1])
            if mark not in hidden:
                hidden.add(mark)
                kind = "folder" if (root / mark).is_dir() else "file"
                yield Entry(
                    display_path(str(mark)) + ("/" if kind == "folder" else ""),
                    None,
                    skip=("hidden", f"A hidden {kind}; not imported."),
                )
            continue
        if not path.is_file():
            continue
        name = display_path(str(rel))
        if (
            path.suffix.lower() not in EXTENSIONS
            and (
                path.parent,
                path.stem,
            )
            in image_stems
        ):
            continue  # beside an image: read by the sidecar readers
        yield Entry(name, lambda path=path: _read_file(path), path)


def display_path(path: str) -> str:
    """A path inside a folder or archive, for display: forward slashes, no
    control characters, no empty or `.` parts."""
    parts = path.replace("\\", "/").split("/")
    shown = "/".join(
        "".join(ch for ch in part if ch.isprintable())
        for part in parts
        if part not in ("", ".")
    )
    return shown[:500]


def _read_file(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(settings.IMAGINEER_MAX_UPLOAD_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"Could not read the file: {exc.strerror}") from exc


def _entries(staged: list[dict[str, Any]]) -> Iterator[Entry]:
    for item in staged:
        with default_storage.open(item["key"], "rb") as fh:
            head = fh.read(4)
        if head == ZIP_MAGIC:
            try:
                yield from list(_zip_entries(item))
            except ValueError as exc:  # the whole archive is one rejected entry
                yield Entry(item["name"], _raiser(str(exc)))
        elif item.get(SIDECAR_ALONE):
            reason = "A caption file with no image of the same name beside it."
            yield Entry(item["name"], None, skip=("sidecar_alone", reason))
        else:
            yield Entry(
                item["name"],
                lambda key=item["key"]: _read_staged(key),
                sidecars=item.get("sidecars"),
            )


def _raiser(reason: str) -> Any:
    def read() -> bytes:
        raise ValueError(reason)

    return read


def _read_staged(key: str) -> bytes:
    with default_storage.open(key, "rb") as fh:
        return fh.read(settings.IMAGINEER_MAX_UPLOAD_BYTES + 1)


def _zip_entries(item: dict[str, str]) -> Iterator[Entry]:
    """Every file member of a zip, in archive order. Hidden members (and macOS
    resource forks) and members whose path climbs out of the archive (`..`)
    are reported, not read; the others are ingested, the content deciding.

    Each member is read through a cap, so a zip bomb cannot exhaust memory: its
    declared size is not trusted.
    """
    archive = _open_zip(item)
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > settings.IMAGINEER_MAX_ZIP_MEMBERS:
        raise ValueError(
            f"{item['name']} holds more than "
            f"{settings.IMAGINEER_MAX_ZIP_MEMBERS} files."
        )
    for member in members:
        parts = PurePosixPath(member.filename.replace("\\", "/")).parts
        name = f"{item['name']}/{display_path(member.filename)}"
        if ".." in parts or member.filename.startswith(("/", "\\")):
            reason = "Its path climbs out of the archive (.. or /); not imported."
            yield Entry(name, None, skip=("unsafe_path", reason))
        elif any(part.startswith((".", "__MACOSX")) for part in parts):
            reason = "A hidden file or macOS resource fork; not imported."
            yield Entry(name, None, skip=("hidden", reason))
        else:
            yield Entry(name, lambda m=member: _read_member(archive, m))


def _open_zip(item: dict[str, str]) -> zipfile.ZipFile:
    # Kept open (storage files are seekable) while the run reads its members.
    fh = default_storage.open(item["key"], "rb")
    try:
        return zipfile.ZipFile(fh)
    except zipfile.BadZipFile as exc:
        fh.close()
        raise ValueError(f"{item['name']} is not a readable zip archive") from exc


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
