"""Disk usage in the staff API: GET /api/admin/disk (docs/disk.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from imagineer_project.disk import disk_overview
from imagineer_project.permissions import staff_required

router = Router(tags=["ops"], auth=staff_required)


class DiskFilesystemOut(Schema):
    """One filesystem, read now, and the roles that write to it."""

    roles: list[str]
    free: int
    total: int
    percent_free: float
    low: bool
    alerting_since: datetime | None


class DiskRoleOut(Schema):
    """What one role used when the `disk-usage` pass last measured it; `used`
    is null before the first pass, or when it is remote and not measured
    here (media on S3)."""

    role: str
    where: str  # "local", the storage backend's class, or the database vendor
    used: int | None
    measured_at: datetime | None


class DiskThresholdsOut(Schema):
    alert_percent: float
    alert_bytes: int
    floor_bytes: int


class DiskOut(Schema):
    filesystems: list[DiskFilesystemOut]
    roles: list[DiskRoleOut]
    thresholds: DiskThresholdsOut


@router.get("/disk", response=DiskOut)
def disk(request: HttpRequest) -> Any:
    """Free and total space of each filesystem we write to (live), what media,
    training work dirs, models and the database use (as last measured), the
    alert thresholds and the floor. Roles, never paths."""
    return disk_overview()
