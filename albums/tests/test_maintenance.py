"""purge-staged-uploads on local storage and on S3 (moto)."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from albums.maintenance import staged_uploads_purge
from albums.models import UploadRun
from albums.tests.builders import make_album
from imagineer_project.maintenance.registry import PASSES, PassReport
from imagineer_project.runs import run_retry

pytestmark = pytest.mark.django_db


def stage(batch: str, sizes: list[int]) -> list[dict[str, str]]:
    """Files as upload_run_create stages them; returns the run's staged_files."""
    return [
        {
            "key": default_storage.save(
                f"staging/uploads/{batch}/{n:06d}", ContentFile(b"x" * size)
            ),
            "name": f"photo-{n}.jpg",
        }
        for n, size in enumerate(sizes)
    ]


def make_upload(status: str, batch: str, sizes: list[int]) -> UploadRun:
    return UploadRun.objects.create(
        album=make_album(name=f"Album {batch}"),
        status=status,
        staged_files=stage(batch, sizes),
    )


def staged_now() -> set[str]:
    _batches = default_storage.listdir("staging/uploads")[0]
    return {
        f"staging/uploads/{batch}/{name}"
        for batch in _batches
        for name in default_storage.listdir(f"staging/uploads/{batch}")[1]
    }


def listed(report: PassReport) -> dict[str, tuple[str, int]]:
    return {item["name"]: (item["what"], item["size"]) for item in report.removed}


@pytest.fixture
def uploads(settings: Any) -> dict[str, Any]:
    settings.STORAGE_ORPHAN_GRACE_HOURS = 24
    runs = {
        "failed": make_upload("failed", "aaa", [10, 20]),
        "succeeded": make_upload("succeeded", "bbb", [5]),
        "cancelled": make_upload("cancelled", "ccc", [7]),
        "running": make_upload("running", "ddd", [30]),
        "queued": make_upload("queued", "eee", [40]),
    }
    stage("fff", [3])  # a request that died before making its run, long ago
    stage("ggg", [4])  # a request making its run right now
    return runs


def age(key: str, hours: int) -> None:
    """Local storage only: date a file back."""
    stamp = time.time() - hours * 3600
    os.utime(default_storage.path(key), (stamp, stamp))


def test_the_pass_is_registered_hourly() -> None:
    assert PASSES["purge-staged-uploads"].func is staged_uploads_purge
    assert PASSES["purge-staged-uploads"].minutes == 60


def test_nothing_staged_is_nothing_to_do() -> None:
    report = PassReport(dry_run=False)

    staged_uploads_purge(report)

    assert report.as_dict()["removed"] == []
    assert report.facts == {"staged_files": 0}


def test_dry_run_lists_ended_runs_files_and_deletes_nothing(uploads: Any) -> None:
    age("staging/uploads/fff/000000", 48)
    before = staged_now()
    report = PassReport(dry_run=True)

    staged_uploads_purge(report)

    assert listed(report) == {
        "staging/uploads/aaa/000000": ("staged file", 10),
        "staging/uploads/aaa/000001": ("staged file", 20),
        "staging/uploads/bbb/000000": ("staged file", 5),
        "staging/uploads/ccc/000000": ("staged file", 7),
        "staging/uploads/fff/000000": ("staged file (no upload run)", 3),
    }
    assert report.bytes_freed == 45
    assert staged_now() == before


def test_purge_deletes_them_and_keeps_open_runs_and_young_orphans(
    uploads: Any,
) -> None:
    age("staging/uploads/fff/000000", 48)
    report = PassReport(dry_run=False)

    staged_uploads_purge(report)

    assert report.bytes_freed == 45
    assert staged_now() == {
        "staging/uploads/ddd/000000",
        "staging/uploads/eee/000000",
        "staging/uploads/ggg/000000",
    }
    again = PassReport(dry_run=False)
    staged_uploads_purge(again)
    assert again.removed == []


def test_a_purged_upload_still_refuses_a_retry_and_says_why(uploads: Any) -> None:
    run = uploads["failed"]
    staged_uploads_purge(PassReport(dry_run=False))

    with pytest.raises(Exception) as refused:
        run_retry(run)

    assert "Its uploaded files were removed when it ended" in str(refused.value)
    run.refresh_from_db()
    assert run.status == "failed"


def test_purge_works_on_s3(s3_bucket: Any, settings: Any) -> None:
    settings.STORAGE_ORPHAN_GRACE_HOURS = 24
    make_upload("failed", "aaa", [10, 20])
    make_upload("running", "ddd", [30])
    stage("ggg", [4])  # young, no run: kept
    dry = PassReport(dry_run=True)

    staged_uploads_purge(dry)
    staged_uploads_purge(report := PassReport(dry_run=False))

    assert listed(dry) == {
        "staging/uploads/aaa/000000": ("staged file", 10),
        "staging/uploads/aaa/000001": ("staged file", 20),
    }
    assert report.bytes_freed == 30
    keys = {o["Key"] for o in s3_bucket.list_objects_v2(Bucket="media")["Contents"]}
    assert keys == {"staging/uploads/ddd/000000", "staging/uploads/ggg/000000"}
