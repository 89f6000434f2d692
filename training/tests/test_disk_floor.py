"""Training runs refuse to start below the disk floor (DISK_FREE_FLOOR_BYTES)
where they work, saying why, and create nothing: through the API, when a run
made earlier is started, and from `manage.py train`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from training.models import DatasetVersion, TrainingRun
from training.runs import run_work_dir
from training.tasks import run_training
from training.tests.builders import make_tiny_run, make_training_album

pytestmark = pytest.mark.django_db

GB = 1024**3
REFUSAL = (
    "Only 512 MB free where training runs work; at least 1 GB is needed "
    "(DISK_FREE_FLOOR_BYTES)."
)


class Disk:
    """shutil.disk_usage answering `free` bytes of 100 GB for every path."""

    free = 50 * GB

    def __call__(self, path: Any) -> Any:
        return shutil._ntuple_diskusage(100 * GB, 100 * GB - self.free, self.free)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path) -> Disk:
    settings.TRAINING_WORK_DIR = tmp_path / "work"
    settings.TRAINING_MIN_CAPTIONED = 3
    settings.DISK_FREE_FLOOR_BYTES = GB
    fake = Disk()
    monkeypatch.setattr(shutil, "disk_usage", fake)
    return fake


def post(client: Any, url: str, body: dict | None = None) -> Any:
    return client.post(
        url, data=json.dumps(body or {}), content_type="application/json"
    )


def test_creating_a_run_below_the_floor_is_refused_and_creates_nothing(
    staff_client, disk
) -> None:
    album = make_training_album()
    disk.free = 512 * 1024**2
    response = post(
        staff_client,
        "/api/training/runs",
        {"albums": [album.slug], "config": {"steps": 600}, "start": True},
    )
    assert response.status_code == 507
    body = response.json()
    assert (body["error"], body["error_code"]) == (REFUSAL, "insufficient_storage")
    assert TrainingRun.objects.count() == 0
    assert DatasetVersion.objects.count() == 0  # refused before the build


def test_starting_a_run_below_the_floor_is_refused(staff_client, disk) -> None:
    run = make_tiny_run()
    disk.free = 512 * 1024**2
    response = post(staff_client, f"/api/training/runs/{run.pk}/start")
    assert response.status_code == 507
    assert response.json()["error"] == REFUSAL
    run.refresh_from_db()
    assert (run.status, run.enqueued_at) == ("queued", None)
    disk.free = GB  # exactly the floor is enough
    assert post(staff_client, f"/api/training/runs/{run.pk}/start").status_code == 202


def test_manage_py_train_says_why_it_will_not_start(disk) -> None:
    album = make_training_album()
    disk.free = 512 * 1024**2
    with pytest.raises(CommandError) as refused:
        call_command("train", "--album", album.slug, "--steps", "10")
    assert str(refused.value) == REFUSAL
    assert TrainingRun.objects.count() == 0


def test_a_run_whose_worker_is_below_the_floor_fails_saying_why(disk) -> None:
    """The gpu worker may be another machine, and a retry skips the create-time
    check: the run's body checks its own disk before copying anything."""
    run = make_tiny_run()
    disk.free = 512 * 1024**2
    assert run_training(run.pk) == "failed"
    run.refresh_from_db()
    assert run.error == f"InsufficientStorage: {REFUSAL}"
    assert not (run_work_dir(run) / "data").exists()
