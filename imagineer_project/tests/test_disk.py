"""Disk usage, the low-space alert and the floor (imagineer_project.disk): the
health check turns degraded at the threshold and back, the crossing is logged
once, staff see the figures in the API and the admin, nobody sees a path."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test import RequestFactory

from imagineer_project.disk import (
    Filesystem,
    _flip,
    disk_check,
    disk_floor_check,
    disk_size,
    disk_usage_pass,
)
from imagineer_project.errors import InsufficientStorage
from imagineer_project.maintenance.registry import PASSES, PassReport
from imagineer_project.models import DiskAlert

pytestmark = pytest.mark.django_db

GB = 1024**3
# Where the roles live in these tests: all under tmp_path, so one filesystem.
ROLES = ["media", "training", "models"]  # the test database is in memory


class FakeDisk:
    """shutil.disk_usage answering `free` of `total` for every path."""

    def __init__(self, free: int, total: int = 100 * GB) -> None:
        self.free, self.total = free, total

    def __call__(self, path: Any) -> Any:
        return shutil._ntuple_diskusage(self.total, self.total - self.free, self.free)


@pytest.fixture
def places(settings: Any, tmp_path: Path) -> Path:
    """Every role's folder inside tmp_path (media is already: conftest)."""
    settings.TRAINING_WORK_DIR = tmp_path / "training"
    settings.VAR_DIR = tmp_path / "var"
    settings.GENERATION_LORA_CACHE_DIR = str(tmp_path / "lora-cache")
    settings.DISK_FREE_ALERT_PERCENT = 10.0
    settings.DISK_FREE_ALERT_BYTES = 0
    settings.DISK_FREE_FLOOR_BYTES = GB
    return tmp_path


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch, places: Path) -> FakeDisk:
    fake = FakeDisk(free=50 * GB)
    monkeypatch.setattr(shutil, "disk_usage", fake)
    return fake


def health(client: Any) -> tuple[int, dict[str, Any]]:
    response = client.get("/api/health")
    return response.status_code, response.json()["disk"]


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


# --- the alert ------------------------------------------------------------------------


def test_health_turns_degraded_just_below_the_percentage_and_back(
    client, disk, settings
) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}  # no worker here
    disk.total = 1_000_000
    readings = []
    for free in (100_001, 100_000, 99_999, 100_000):
        disk.free = free
        readings.append(health(client))
    fine = {"roles": ROLES, "percent_free": 10.0, "low": False}
    assert readings == [
        (200, {"ok": True, "filesystems": [fine]}),  # 10.0001 %, shown rounded
        (200, {"ok": True, "filesystems": [fine]}),  # exactly 10 %: not below
        (
            503,
            {
                "ok": False,
                "filesystems": [{"roles": ROLES, "percent_free": 10.0, "low": True}],
            },
        ),
        (200, {"ok": True, "filesystems": [fine]}),
    ]
    assert client.get("/api/health").json()["status"] == "ok"


def test_the_bytes_threshold_counts_when_set(client, disk, settings) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    disk.free = 5 * GB  # 5 % of 100 GB, but the percentage is off
    settings.DISK_FREE_ALERT_PERCENT = 0
    assert health(client)[0] == 200
    settings.DISK_FREE_ALERT_BYTES = 5 * GB
    assert health(client)[0] == 200  # exactly at it
    disk.free = 5 * GB - 1
    assert health(client)[0] == 503
    settings.DISK_FREE_ALERT_BYTES = 0
    assert health(client)[0] == 200


def test_crossing_logs_one_error_however_many_checks(client, disk, caplog) -> None:
    caplog.set_level(logging.INFO, logger="imagineer_project.disk")
    disk.free = 3 * GB + GB // 10
    for _ in range(5):
        client.get("/api/health")
        disk_check()
    ours = [r for r in caplog.records if r.name == "imagineer_project.disk"]
    errors = [r for r in ours if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "Disk low: media, training and models have 3.1 GB free of 100 GB (3.1%), "
        "below the alert threshold (DISK_FREE_ALERT_PERCENT=10%); free some space."
    ]
    caplog.clear()
    disk.free = 40 * GB
    for _ in range(3):
        disk_check()
    ours = [r for r in caplog.records if r.name == "imagineer_project.disk"]
    assert [(r.levelname, r.getMessage()) for r in ours] == [
        (
            "WARNING",
            "Disk space recovered: media, training and models have 40 GB free of "
            "100 GB (40.0%).",
        )
    ]
    assert not DiskAlert.objects.filter(alerting=True).exists()


def test_a_process_that_comes_second_logs_nothing(disk, caplog) -> None:
    """Two processes that both read "not low" both try the flip; the
    conditional UPDATE lets one of them log."""
    disk_check()  # the rows exist
    low = Filesystem(tuple(ROLES), free=GB, total=100 * GB)
    with caplog.at_level(logging.ERROR, logger="imagineer_project.disk"):
        _flip(low, list(ROLES))
        _flip(low, list(ROLES))
    assert len(caplog.records) == 1
    rows = DiskAlert.objects.filter(name__in=ROLES)
    assert {(r.name, r.alerting) for r in rows} == {(role, True) for role in ROLES}
    assert len({r.since for r in rows}) == 1


def test_the_alert_state_is_kept_per_role(disk) -> None:
    disk.free = GB
    disk_check()
    rows = {r.name: r for r in DiskAlert.objects.all()}
    assert set(rows) == {*ROLES, "database"}
    assert [r.alerting for r in (rows[n] for n in ROLES)] == [True] * 3
    assert rows["database"].alerting is False  # in memory: no disk to be low on
    assert rows["media"].since is not None


# --- the banner and the index panel ---------------------------------------------------


def banner(user: Any) -> str:
    request = RequestFactory().get("/admin/")
    request.user = user
    return render_to_string(
        "admin/imagineer/_disk_banner.html", {"request": request}, request=request
    )


def test_the_banner_shows_while_low_and_goes_once_it_clears(
    disk, staff_user, admin_client
) -> None:
    assert "Disk space is low" not in banner(staff_user)  # empty table
    disk.free = GB
    disk_check()
    shown = banner(staff_user)
    assert "Disk space is low where media, training and models write" in shown
    page = admin_client.get("/admin/auth/user/").content.decode()
    assert "Disk space is low where media, training and models write" in page
    disk.free = 50 * GB
    disk_check()
    assert "Disk space is low" not in banner(staff_user)
    assert (
        "Disk space is low"
        not in admin_client.get("/admin/auth/user/").content.decode()
    )


def test_the_banner_is_for_staff_only(client, disk, plain_user) -> None:
    disk.free = GB
    disk_check()
    assert "Disk space is low" not in banner(plain_user)
    login = client.get("/admin/login/")
    assert login.status_code == 200
    assert "Disk space is low" not in login.content.decode()


def test_the_admin_index_shows_disk_usage(admin_client, disk, places) -> None:
    write(places / "media" / "images" / "a.jpg", 2048)
    disk_usage_pass(PassReport(dry_run=False))
    page = admin_client.get("/admin/")
    text = page.content.decode()
    assert page.status_code == 200
    assert 'id="disk-usage"' in text
    assert "media, training, models" in text
    assert "50 GB" in text and "100 GB" in text
    assert "2 KB" in text  # what media uses
    assert str(places) not in text


# --- the staff API --------------------------------------------------------------------


def test_disk_api_is_staff_only(call_as) -> None:
    for kind, status in (("anonymous", 401), ("user", 403)):
        response = call_as(kind).get("/api/admin/disk")
        assert response.status_code == status, kind
        assert set(response.json()) == {
            "error",
            "error_code",
            "trace_id",
            "timestamp",
            "details",
        }


def test_disk_api_measures_real_files(
    staff_client, places: Path, tmp_path: Path
) -> None:
    write(places / "media" / "images" / "a.jpg", 3000)
    write(places / "training" / "run-1" / "checkpoint.bin", 1000)
    write(places / "training" / "run-1" / "log.txt", 500)
    write(places / "var" / "models" / "tiny" / "unet.bin", 700)
    write(places / "lora-cache" / "3.safetensors", 300)
    # A link to a big file elsewhere is not counted, nor followed.
    write(tmp_path / "elsewhere" / "big.bin", 10_000)
    (places / "training" / "run-1" / "linked").symlink_to(tmp_path / "elsewhere")
    report = PassReport(dry_run=False)
    disk_usage_pass(report)

    response = staff_client.get("/api/admin/disk")
    assert response.status_code == 200
    body = response.json()
    real = shutil.disk_usage(tmp_path)
    [fs] = body["filesystems"]
    assert fs["roles"] == ROLES
    assert fs["total"] == real.total
    assert 0 < fs["free"] <= real.total
    assert fs["low"] is (fs["percent_free"] < 10)
    assert fs["alerting_since"] is None or fs["low"]
    used = {r["role"]: (r["where"], r["used"]) for r in body["roles"]}
    database = used.pop("database")
    assert used == {
        "media": ("local", 3000),
        "training": ("local", 1500),
        "models": ("local", 1000),
    }
    # The test database: SQLite in memory (nothing on disk to measure), or
    # PostgreSQL, measured by pg_database_size.
    if connection.vendor == "postgresql":
        assert database[0] == "postgresql" and database[1] > 0
    else:
        assert database == ("memory", None)
    assert all(r["measured_at"] for r in body["roles"] if r["used"] is not None)
    assert body["thresholds"] == {
        "alert_percent": 10.0,
        "alert_bytes": 0,
        "floor_bytes": GB,
    }
    assert str(tmp_path) not in response.content.decode()


def test_before_the_first_pass_nothing_is_measured(staff_client, disk) -> None:
    body = staff_client.get("/api/admin/disk").json()
    assert [(r["role"], r["used"], r["measured_at"]) for r in body["roles"]] == [
        ("media", None, None),
        ("training", None, None),
        ("models", None, None),
        ("database", None, None),
    ]
    assert body["filesystems"] == [
        {
            "roles": ROLES,
            "free": 50 * GB,
            "total": 100 * GB,
            "percent_free": 50.0,
            "low": False,
            "alerting_since": None,
        }
    ]


def test_remote_media_is_not_measured_here(staff_client, disk, settings) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    disk_usage_pass(PassReport(dry_run=False))
    body = staff_client.get("/api/admin/disk").json()
    assert body["roles"][0] == {
        "role": "media",
        "where": "InMemoryStorage",
        "used": None,
        "measured_at": body["roles"][0]["measured_at"],
    }
    assert body["filesystems"][0]["roles"] == ["training", "models"]
    disk.free = 1
    disk_floor_check("media")  # no local disk: no floor


# --- the pass -------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [True, False])
def test_the_pass_reports_its_readings_and_removes_nothing(
    disk, places: Path, dry_run: bool
) -> None:
    assert PASSES["disk-usage"].minutes == 15
    write(places / "training" / "run-1" / "a.bin", 4096)
    disk.free = 5 * GB
    report = PassReport(dry_run=dry_run)
    PASSES["disk-usage"].func(report)
    facts = report.as_dict()
    assert (facts["items_removed"], facts["bytes_freed"], facts["removed"]) == (
        0,
        0,
        [],
    )
    assert facts["facts"]["filesystems"] == [
        {
            "roles": ROLES,
            "free": 5 * GB,
            "total": 100 * GB,
            "percent_free": 5.0,
            "low": True,
        }
    ]
    assert facts["facts"]["roles"]["training"]["used"] == 4096
    assert facts["facts"]["thresholds"]["alert_percent"] == 10.0
    assert (places / "training" / "run-1" / "a.bin").exists()
    assert DiskAlert.objects.get(name="training").alerting is True


# --- the floor ------------------------------------------------------------------------


def test_the_floor_refuses_with_a_clear_message(disk, settings) -> None:
    disk.free = 512 * 1024**2
    with pytest.raises(InsufficientStorage) as refused:
        disk_floor_check("training")
    assert refused.value.message == (
        "Only 512 MB free where training runs work; at least 1 GB is needed "
        "(DISK_FREE_FLOOR_BYTES)."
    )
    assert (refused.value.status, refused.value.code) == (507, "insufficient_storage")
    disk.free = GB
    disk_floor_check("training")  # exactly at the floor is enough
    settings.DISK_FREE_FLOOR_BYTES = 0
    disk.free = 0
    disk_floor_check("training")  # 0: no floor


def test_sizes_read_as_people_read_them() -> None:
    assert [
        disk_size(n) for n in (0, 1023, 2048, 512 * 1024**2, GB, int(3.1 * GB))
    ] == [
        "0 bytes",
        "1023 bytes",
        "2 KB",
        "512 MB",
        "1 GB",
        "3.1 GB",
    ]
