"""Disk usage, the low-space alert and the hard floor (docs/disk.md).

Four *roles* write to disk: `media` (default storage, when it is the local
filesystem), `training` (TRAINING_WORK_DIR), `models` (<VAR_DIR>/models and
GENERATION_LORA_CACHE_DIR) and `database` (the SQLite file). Callers only ever
see these names and sizes, never a path.

Two speeds: the bytes a role uses come from a directory walk, which can take
minutes on a big library, so the `disk-usage` pass does it every 15 minutes and
stores the figure in the role's DiskAlert row; the free and total space of a
filesystem is one statvfs call, so it is read live (health, admin, API).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection
from django.utils import timezone

from imagineer_project.errors import InsufficientStorage
from imagineer_project.maintenance.registry import PassReport, register_pass
from imagineer_project.models import DiskAlert

logger = logging.getLogger(__name__)

ROLES = ("media", "training", "models", "database")

# Where a role writes, in words for a floor refusal.
_WHERE = {
    "media": "images are stored",
    "training": "training runs work",
    "models": "models are kept",
    "database": "the database lives",
}


@dataclass(frozen=True)
class Place:
    """Where one role writes: local paths, or `remote` ("s3", "postgresql",
    "memory") when nothing of it is on a local filesystem."""

    role: str
    paths: tuple[Path, ...] = ()
    remote: str = ""


@dataclass(frozen=True)
class Filesystem:
    """One filesystem and the roles that write to it, read live."""

    roles: tuple[str, ...]
    free: int
    total: int

    @property
    def percent_free(self) -> float:
        return round(self.free / self.total * 100, 2) if self.total else 100.0

    @property
    def low(self) -> bool:
        return disk_is_low(free=self.free, total=self.total)

    @property
    def name(self) -> str:
        return _spoken(self.roles)


# --- where and how full ---------------------------------------------------------------


def disk_places() -> list[Place]:
    """Each role's place, from the settings as they are now."""
    return [_media(), _training(), _models(), _database()]


def _media() -> Place:
    # default_storage is a LazyObject; isinstance sees the real backend.
    if not isinstance(default_storage, FileSystemStorage):
        return Place("media", remote=default_storage.__class__.__name__)
    return Place("media", (Path(default_storage.location),))


def _training() -> Place:
    return Place("training", (Path(settings.TRAINING_WORK_DIR),))


def _models() -> Place:
    folders = [
        Path(settings.VAR_DIR) / "models",
        Path(settings.GENERATION_LORA_CACHE_DIR),
    ]
    # A folder inside another is measured once, as part of the outer one.
    kept = [f for f in folders if not any(o != f and o in f.parents for o in folders)]
    return Place("models", tuple(dict.fromkeys(kept)))


def _database() -> Place:
    if connection.vendor != "sqlite":
        return Place("database", remote=connection.vendor)
    name = str(connection.settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name:
        return Place("database", remote="memory")
    return Place("database", (Path(name),))


def _existing(path: Path) -> Path:
    """`path`, or its nearest folder that exists (a work dir not made yet
    still lives on its parent's filesystem)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or "/")


def disk_filesystems(places: list[Place] | None = None) -> list[Filesystem]:
    """The filesystems the roles write to, one entry per device however many
    roles share it; free/total read now (shutil.disk_usage: cheap)."""
    by_device: dict[int, tuple[Path, list[str]]] = {}
    for place in places if places is not None else disk_places():
        for path in place.paths:
            found = _existing(path)
            device = found.stat().st_dev
            where, roles = by_device.setdefault(device, (found, []))
            if place.role not in roles:
                roles.append(place.role)
    filesystems = []
    for where, roles in by_device.values():
        usage = shutil.disk_usage(where)
        filesystems.append(Filesystem(tuple(roles), usage.free, usage.total))
    return filesystems


def disk_is_low(*, free: int, total: int) -> bool:
    """Below DISK_FREE_ALERT_PERCENT of the filesystem, or (when set) below
    DISK_FREE_ALERT_BYTES. Exactly at the percentage is not low."""
    if total and free / total * 100 < settings.DISK_FREE_ALERT_PERCENT:
        return True
    limit = settings.DISK_FREE_ALERT_BYTES
    return bool(limit) and free < limit


# --- the alert ------------------------------------------------------------------------


def disk_check() -> list[Filesystem]:
    """Read every filesystem now and record which are low in DiskAlert.

    Entering low logs one ERROR line and recovering one WARNING, however many
    processes check: the crossing is claimed with a conditional UPDATE on the
    filesystem's first role, and only the process whose UPDATE changed that
    row logs. Costs the statvfs calls and one SELECT while nothing changes.
    """
    filesystems = disk_filesystems()
    state = dict(DiskAlert.objects.values_list("name", "alerting"))
    if len(state) < len(ROLES):
        DiskAlert.objects.bulk_create(
            [DiskAlert(name=role) for role in ROLES if role not in state],
            ignore_conflicts=True,
        )
    # A role on two filesystems (models: a LoRA cache elsewhere) is low when
    # either is; each filesystem flips only the roles that follow it.
    low = {role: False for fs in filesystems for role in fs.roles}
    for fs in filesystems:
        for role in fs.roles:
            low[role] = low[role] or fs.low
    for fs in filesystems:
        changing = [
            role
            for role in fs.roles
            if low[role] == fs.low and state.get(role, False) != fs.low
        ]
        if changing:
            _flip(fs, changing)
    # A role now remote (S3, PostgreSQL) has no local disk to be low on.
    stale = [role for role, alerting in state.items() if alerting and role not in low]
    if stale:
        DiskAlert.objects.filter(name__in=stale).update(alerting=False, since=None)
    return filesystems


def _flip(fs: Filesystem, roles: list[str]) -> None:
    """Set `roles` to the filesystem's state; log when this call's UPDATE
    changed the first of them (another process may have got there first)."""
    now = timezone.now()
    claim, *rest = roles
    changes = {"alerting": fs.low, "since": now if fs.low else None, "checked_at": now}
    claimed = DiskAlert.objects.filter(name=claim, alerting=not fs.low).update(
        **changes
    )
    DiskAlert.objects.filter(name__in=rest, alerting=not fs.low).update(**changes)
    if not claimed:
        return
    reading = (
        f"{fs.name} {'has' if len(fs.roles) == 1 else 'have'} {disk_size(fs.free)} "
        f"free of {disk_size(fs.total)} ({fs.percent_free:.1f}%)"
    )
    if fs.low:
        logger.error(
            "Disk low: %s, below the alert threshold (%s); free some space.",
            reading,
            _thresholds_spoken(),
        )
    else:
        logger.warning("Disk space recovered: %s.", reading)


def _thresholds_spoken() -> str:
    said = f"DISK_FREE_ALERT_PERCENT={settings.DISK_FREE_ALERT_PERCENT:g}%"
    if settings.DISK_FREE_ALERT_BYTES:
        said += f", DISK_FREE_ALERT_BYTES={disk_size(settings.DISK_FREE_ALERT_BYTES)}"
    return said


# --- the floor ------------------------------------------------------------------------


def disk_floor_check(role: str) -> None:
    """Raise InsufficientStorage when the filesystem `role` writes to has
    fewer free bytes than DISK_FREE_FLOOR_BYTES (0: never). A remote role
    (media on S3) has no local floor."""
    floor = settings.DISK_FREE_FLOOR_BYTES
    if not floor:
        return
    places = {place.role: place for place in disk_places()}
    if role not in places:
        raise ValueError(f"No disk role {role!r}; one of {', '.join(ROLES)}.")
    place = places[role]
    for path in place.paths:
        free = shutil.disk_usage(_existing(path)).free
        if free < floor:
            raise InsufficientStorage(
                f"Only {disk_size(free)} free where {_WHERE[role]}; at least "
                f"{disk_size(floor)} is needed (DISK_FREE_FLOOR_BYTES).",
                details={"role": role, "free": free, "floor": floor},
            )


# --- usage (the pass) -----------------------------------------------------------------


def _tree_size(path: Path) -> int:
    """Bytes of the files under `path` (or of the file), never following a
    symlink: a link to a big folder elsewhere is not ours."""
    try:
        if not path.is_dir():
            return path.lstat().st_size if path.exists() else 0
    except OSError:
        return 0
    total = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_symlink():
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:  # removed while we walked
                        continue
        except OSError:
            continue
    return total


def _role_used(place: Place) -> int | None:
    if place.remote == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            return int(cursor.fetchone()[0])
    if place.remote:
        return None
    used = sum(_tree_size(path) for path in place.paths)
    if place.role == "database":
        # SQLite's write-ahead log and shared memory sit beside the file.
        used += sum(
            _tree_size(path.with_name(path.name + suffix))
            for path in place.paths
            for suffix in ("-wal", "-shm")
        )
    return used


def disk_usage_measure(report: PassReport | None = None) -> dict[str, dict]:
    """Walk each role's folders and store what it uses in its DiskAlert
    row's detail (`used`, `measured_at`, `where`); returns the same figures."""
    places = disk_places()
    measured: dict[str, dict] = {}
    for n, place in enumerate(places):
        if report is not None:
            report.progress(n, len(places), f"Measuring {place.role}")
        measured[place.role] = {
            "used": _role_used(place),
            "measured_at": timezone.now().isoformat(),
            "where": place.remote or "local",
        }
    for role, detail in measured.items():
        DiskAlert.objects.update_or_create(name=role, defaults={"detail": detail})
    return measured


def disk_usage_pass(report: PassReport) -> None:
    """The scheduled `disk-usage` pass: measure, store, check the alert.
    Removes nothing, so a dry run does the same."""
    measured = disk_usage_measure(report)
    filesystems = disk_check()
    report.facts.update(
        {
            "roles": measured,
            "filesystems": [_filesystem_facts(fs) for fs in filesystems],
            "thresholds": disk_thresholds(),
        }
    )
    report.progress(len(measured), len(measured), "Measured")


def _filesystem_facts(fs: Filesystem) -> dict[str, Any]:
    return {
        "roles": list(fs.roles),
        "free": fs.free,
        "total": fs.total,
        "percent_free": fs.percent_free,
        "low": fs.low,
    }


# --- what the admin, API and health show ----------------------------------------------


def disk_thresholds() -> dict[str, Any]:
    return {
        "alert_percent": settings.DISK_FREE_ALERT_PERCENT,
        "alert_bytes": settings.DISK_FREE_ALERT_BYTES,
        "floor_bytes": settings.DISK_FREE_FLOOR_BYTES,
    }


def disk_overview() -> dict[str, Any]:
    """Everything staff see: each filesystem live (with when its alert
    began), each role's last measured use, and the thresholds. Names roles,
    never paths."""
    filesystems = disk_check()
    rows = {row.name: row for row in DiskAlert.objects.all()}

    def since(roles: tuple[str, ...]) -> datetime | None:
        times = [rows[r].since for r in roles if r in rows and rows[r].since]
        return min(times, default=None)

    roles = []
    places = {place.role: place for place in disk_places()}
    for role in ROLES:
        detail = rows[role].detail if role in rows else {}
        measured_at = detail.get("measured_at")
        roles.append(
            {
                "role": role,
                "where": places[role].remote or "local",
                "used": detail.get("used"),
                "measured_at": (
                    datetime.fromisoformat(measured_at) if measured_at else None
                ),
            }
        )
    return {
        "filesystems": [
            {**_filesystem_facts(fs), "alerting_since": since(fs.roles)}
            for fs in filesystems
        ],
        "roles": roles,
        "thresholds": disk_thresholds(),
    }


def disk_health() -> dict[str, Any]:
    """/api/health's disk check, for anyone: which roles are low and the
    percentage free of each filesystem; no sizes, no paths."""
    try:
        filesystems = disk_check()
    except Exception:
        logger.exception("Health: disk check failed")
        return {"ok": False, "filesystems": []}
    return {
        "ok": not any(fs.low for fs in filesystems),
        "filesystems": [
            {"roles": list(fs.roles), "percent_free": fs.percent_free, "low": fs.low}
            for fs in filesystems
        ],
    }


def disk_alerts() -> list[DiskAlert]:
    """The roles alerting now, in ROLES order (the admin banner): one query."""
    rows = DiskAlert.objects.filter(alerting=True)
    return sorted(rows, key=lambda row: _order(row.name))


def _order(role: str) -> int:
    return ROLES.index(role) if role in ROLES else len(ROLES)


def disk_size(n: int) -> str:
    """Bytes as a person reads them, in powers of 1024: 1 GB, 3.1 GB, 512 MB."""
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            text = f"{size:.1f}".removesuffix(".0")
            return f"{text} {unit}" if unit != "bytes" else f"{int(n)} bytes"
        size /= 1024
    raise AssertionError("unreachable")


def _spoken(roles: tuple[str, ...]) -> str:
    """("media", "training") -> "media and training"."""
    if len(roles) < 2:
        return "".join(roles)
    return ", ".join(roles[:-1]) + " and " + roles[-1]


register_pass(
    "disk-usage",
    disk_usage_pass,
    minutes=15,
    description="Measure what media, training work dirs, models and the database "
    "use, and check free space against the alert threshold (removes nothing).",
)
