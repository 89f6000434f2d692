"""Reconciling default storage with the rows that reference its files.

`reconcile-storage` walks each registered owner's prefix (registry
.register_storage_owner) and compares what is stored with the keys the
owner's rows reference:

- a stored file no row references, older than STORAGE_ORPHAN_GRACE_HOURS, is
  an orphan and is deleted (so a file an ingest in flight has just written is
  never touched); a younger one is counted and kept;
- a referenced key with no file is reported as a problem, never "fixed": the
  row stays for a person to look at;
- files under no registered prefix are left alone and counted by top-level
  folder, except the `.tmp-*` leftovers of AtomicFileSystemStorage (a write
  that crashed before its rename), which are orphans wherever they are.

Only Django's storage API is used, so local storage and S3 behave the same;
on S3 one listing per prefix brings every key with its size and date (no
request per file).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.storage import Storage, default_storage
from django.utils import timezone

from imagineer_project.maintenance.registry import (
    STORAGE_OWNERS,
    PassReport,
    StorageOwner,
    register_pass,
    register_storage_owner,
)

logger = logging.getLogger(__name__)

# A checkpoint (heartbeat, cancel) every this many files listed.
BATCH = 500
# AtomicFileSystemStorage writes here first and renames into place.
TEMP_PREFIX = ".tmp-"
KEPT_YOUNG = "kept: younger than the grace period"


@dataclass(frozen=True)
class StoredFile:
    key: str  # relative to the storage's root, "/"-separated
    size: int
    modified: datetime


# --- listing ----------------------------------------------------------------------


def storage_files(prefix: str, storage: Storage | None = None) -> Iterator[StoredFile]:
    """Every file under `prefix` ("" for all), with its size and date."""
    storage = storage or default_storage
    bucket = _s3_bucket(storage)
    if bucket is not None:
        yield from _s3_files(storage, bucket, prefix)
        return
    for key in _walk(storage, prefix.rstrip("/")):
        yield StoredFile(key, storage.size(key), storage.get_modified_time(key))


def _s3_bucket(storage: Storage) -> Any:
    # django-storages' S3Storage: its bucket lists keys with size and date.
    # Anything else goes through listdir. (default_storage is a LazyObject;
    # attribute access reaches the real backend.)
    if not hasattr(storage, "_normalize_name") or not hasattr(storage, "bucket_name"):
        return None
    return storage.bucket


def _s3_files(storage: Any, bucket: Any, prefix: str) -> Iterator[StoredFile]:
    root = storage._normalize_name(prefix) if prefix else storage.location
    root = root.rstrip("/") + "/" if root else ""
    # Keys come back under the storage's location (S3_PREFIX): strip it.
    location = storage.location.rstrip("/") + "/" if storage.location else ""
    for entry in bucket.objects.filter(Prefix=root):
        if entry.key.endswith("/"):
            continue  # a "folder" marker some tools write
        key = entry.key[len(location) :]
        yield StoredFile(key, entry.size, entry.last_modified)


def _walk(storage: Storage, folder: str) -> Iterator[str]:
    """Keys under `folder` by listdir, depth first ("" is the root)."""
    try:
        folders, files = storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in sorted(files):
        yield posixpath.join(folder, name) if folder else name
    for name in sorted(folders):
        yield from _walk(storage, posixpath.join(folder, name) if folder else name)


def _top_level(storage: Storage) -> tuple[list[str], list[str]]:
    """The root's folders and files."""
    try:
        folders, files = storage.listdir("")
    except FileNotFoundError:
        return [], []
    return sorted(folders), sorted(files)


# --- the pass ---------------------------------------------------------------------


def storage_reconcile(report: PassReport) -> None:
    """The reconcile-storage pass (see the module's docstring). Options:
    `grace_hours` overrides STORAGE_ORPHAN_GRACE_HOURS for this run."""
    grace = report.options.get("grace_hours")
    grace = settings.STORAGE_ORPHAN_GRACE_HOURS if grace is None else int(grace)
    cutoff = timezone.now() - timedelta(hours=grace)
    owners = sorted(STORAGE_OWNERS.values(), key=lambda owner: owner.prefix)
    report.facts.update(
        {"grace period (hours)": grace, KEPT_YOUNG: 0, "missing files": 0}
    )
    total = len(owners) + 1
    for done, owner in enumerate(owners):
        report.progress(done, total, f"Checking {owner.prefix}")
        _reconcile_owner(report, owner, cutoff, owners)
    report.progress(len(owners), total, "Checking files under no owner")
    _scan_unowned(report, cutoff, owners)
    report.progress(total, total, "Checked every prefix")


def _reconcile_owner(
    report: PassReport,
    owner: StorageOwner,
    cutoff: datetime,
    owners: list[StorageOwner],
) -> None:
    # A set of every referenced key: one pass over the rows, then one over
    # the files. Keys are short, so even a large library's set fits in memory.
    expected = _expected(owner)
    inner = [o.prefix for o in owners if o.prefix.startswith(owner.prefix)]
    counts = {"files": 0, "bytes": 0, "referenced": len(expected), "orphans": 0}
    due: list[StoredFile] = []
    for n, stored in enumerate(storage_files(owner.prefix), start=1):
        if _deeper_owner(stored.key, owner.prefix, inner):
            continue  # a prefix inside this one has an owner of its own
        counts["files"] += 1
        counts["bytes"] += stored.size
        if stored.key in expected:
            expected.discard(stored.key)
        elif _past_grace(report, stored, cutoff):
            due.append(stored)
        if n % BATCH == 0:
            _tick(report, f"{owner.prefix}: {n} files checked")
    if due or (expected and owner.report_missing):
        # Ask the rows again before acting: content-addressed keys mean an
        # ingest may have just given an old orphan a row again (its file
        # already existed, so it was not rewritten), and a row may have gone
        # with its file while we listed.
        now_referenced = _expected(owner)
        due = [stored for stored in due if stored.key not in now_referenced]
        expected &= now_referenced
    for n, stored in enumerate(due, start=1):
        _remove(report, stored)
        if n % BATCH == 0:
            _tick(report, f"{owner.prefix}: {n} orphans removed")
    counts["orphans"] = len(due)
    counts["missing"] = len(expected) if owner.report_missing else 0
    if owner.report_missing:
        report.facts["missing files"] += len(expected)
        for key in sorted(expected):
            report.problem(f"{key}: referenced by {owner.description}, not in storage")
    report.facts.setdefault("prefixes", {})[owner.prefix] = counts


def _expected(owner: StorageOwner) -> set[str]:
    return {key for key in owner.expected_keys() if key}


def _deeper_owner(key: str, prefix: str, inner: list[str]) -> bool:
    return any(p != prefix and key.startswith(p) for p in inner)


def _past_grace(report: PassReport, stored: StoredFile, cutoff: datetime) -> bool:
    """Whether an unreferenced file is due; one still in its grace period is
    counted as kept."""
    if stored.modified > cutoff:
        report.facts[KEPT_YOUNG] += 1
        return False
    return True


def _remove(report: PassReport, stored: StoredFile) -> None:
    if not report.dry_run:
        default_storage.delete(stored.key)
    report.remove("file", stored.key, size=stored.size)


def _scan_unowned(
    report: PassReport, cutoff: datetime, owners: list[StorageOwner]
) -> None:
    """Count files under no owner by top-level folder; only `.tmp-*` files
    there are removed. Owned subtrees are not listed again."""
    prefixes = [owner.prefix for owner in owners]
    unowned: dict[str, int] = {}
    folders, files = _top_level(default_storage)
    if files:
        unowned["(top level)"] = len(files)
    for top in folders:
        folder = top + "/"
        if any(folder.startswith(p) for p in prefixes):
            continue  # wholly owned: listed above
        for stored in storage_files(folder):
            if any(stored.key.startswith(p) for p in prefixes):
                continue
            if posixpath.basename(stored.key).startswith(TEMP_PREFIX):
                if _past_grace(report, stored, cutoff):
                    _remove(report, stored)
            else:
                unowned[top] = unowned.get(top, 0) + 1
    report.facts["files under no owner"] = unowned


def _tick(report: PassReport, message: str) -> None:
    # The pass's own total is the number of prefixes; a batch within one
    # keeps the heartbeat fresh and lets a cancel stop it mid-prefix.
    if report.on_progress is not None:
        report.on_progress(
            len(report.facts.get("prefixes", {})),
            len(STORAGE_OWNERS) + 1,
            message,
        )


def _no_keys() -> list[str]:
    return []


register_storage_owner(
    "health/",
    _no_keys,
    description="the health check's probe (each file is deleted once written)",
)
register_pass(
    "reconcile-storage",
    storage_reconcile,
    minutes=24 * 60,
    description=(
        "Delete stored files no row references (once older than "
        "STORAGE_ORPHAN_GRACE_HOURS) and report rows whose file is missing."
    ),
)
