"""`manage.py maintenance` and `manage.py reconcile_storage`, end to end on a
library with leftovers."""

from __future__ import annotations

import io
import os
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from albums.tests.builders import make_image
from imagineer_project.maintenance.registry import PASSES, MaintenancePass, PassReport
from imagineer_project.models import MaintenanceRun

pytestmark = pytest.mark.django_db


def leftover(key: str, data: bytes, *, age_hours: float) -> str:
    name = default_storage.save(key, ContentFile(data))
    then = time.time() - age_hours * 3600
    os.utime(default_storage.path(name), (then, then))
    return name


def manage(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_maintenance_dry_run_reports_what_it_would_remove() -> None:
    make_image(seed=1)
    orphan = leftover("images/aa/bb/orphan.jpg", b"o" * 2048, age_hours=72)

    out = manage("maintenance", "reconcile-storage", "--dry-run")

    run = MaintenanceRun.objects.get()
    assert (run.task, run.trigger, run.dry_run) == (
        "reconcile-storage",
        "command",
        True,
    )
    assert out.splitlines()[:2] == [
        f"reconcile-storage #{run.pk} succeeded: Would remove 1 file (2.0 KB) "
        "(dry run)",
        f"  would remove file: {orphan} (2.0 KB)",
    ]
    assert "  kept: younger than the grace period: 0" in out
    assert default_storage.exists(orphan)


def test_maintenance_with_no_task_runs_every_pass(monkeypatch) -> None:
    seen: list[str] = []
    for name in list(PASSES):
        monkeypatch.setitem(
            PASSES,
            name,
            MaintenancePass(name, lambda r, n=name: seen.append(n), 60, ""),
        )

    manage("maintenance", "--dry-run")

    assert sorted(seen) == sorted(PASSES)
    assert MaintenanceRun.objects.filter(dry_run=True).count() == len(PASSES)


def test_maintenance_refuses_an_unknown_task() -> None:
    with pytest.raises(CommandError, match="No maintenance task purge-all; the tasks"):
        manage("maintenance", "purge-all")
    assert not MaintenanceRun.objects.exists()


def test_maintenance_fails_when_a_pass_fails(monkeypatch) -> None:
    def broken(report: PassReport) -> None:
        raise RuntimeError("no such table")

    monkeypatch.setitem(PASSES, "broken", MaintenancePass("broken", broken, 60, ""))

    with pytest.raises(CommandError, match="Did not succeed: broken"):
        manage("maintenance", "broken", "reconcile-storage")
    # The failure did not stop the next pass.
    assert MaintenanceRun.objects.get(task="reconcile-storage").status == "succeeded"


def test_reconcile_storage_takes_its_own_grace_period() -> None:
    young = leftover("loras/0ff.safetensors", b"l" * 100, age_hours=2)

    out = manage("reconcile_storage", "--dry-run", "--grace-hours", "48")
    assert "Nothing to remove (dry run)" in out
    assert "  grace period (hours): 48" in out

    out = manage("reconcile_storage", "--grace-hours", "1")
    assert "Removed 1 file (100 bytes)" in out
    assert not default_storage.exists(young)
    run = MaintenanceRun.objects.latest("pk")
    assert run.report["options"] == {"grace_hours": 1}


def test_reconcile_storage_refuses_negative_hours() -> None:
    with pytest.raises(CommandError):
        manage("reconcile_storage", "--grace-hours", "-1")
