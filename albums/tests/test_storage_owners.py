"""What albums own in storage, as reconcile-storage sees it: originals,
thumbnails at every configured size, and the staged files of upload runs
still under way."""

from __future__ import annotations

import os
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from albums.models import UploadRun
from albums.services import (
    image_thumbnail_key,
    thumbnail_key,
    upload_run_create,
)
from albums.tests.builders import make_album, make_image
from imagineer_project.maintenance.runner import maintenance_run_now
from imagineer_project.testing import make_image_bytes

pytestmark = pytest.mark.django_db


def age(key: str, hours: float = 48) -> str:
    then = time.time() - hours * 3600
    os.utime(default_storage.path(key), (then, then))
    return key


def reconcile() -> dict:
    run = maintenance_run_now(
        task="reconcile-storage", dry_run=False, trigger="command"
    )
    assert run.status == "succeeded", run.error
    return run.report


def test_thumbnails_of_library_images_stay_and_strays_go() -> None:
    image = make_image(seed=1)
    large = age(image_thumbnail_key(image, 512))  # made on demand
    small = age(thumbnail_key(image.sha256, 256))
    stray = age(
        default_storage.save(thumbnail_key("ab" * 32, 256), ContentFile(b"x" * 9))
    )

    report = reconcile()

    assert [item["name"] for item in report["removed"]] == [stray]
    assert default_storage.exists(large)
    assert default_storage.exists(small)
    assert default_storage.exists(image.file.name)


def test_staged_files_stay_while_their_upload_runs_and_go_after() -> None:
    waiting = upload_run_create(
        files=[SimpleUploadedFile("a.jpg", make_image_bytes(seed=2))],
        album=make_album(),
    )  # queued: its task runs on commit, which never comes in this test
    kept = age(waiting.staged_files[0]["key"])
    left = age(default_storage.save("staging/uploads/old/000000", ContentFile(b"x")))
    UploadRun.objects.create(status="succeeded", staged_files=[{"key": left}])

    report = reconcile()

    assert [item["name"] for item in report["removed"]] == [left]
    assert default_storage.exists(kept)
    # Nothing is missing: staged files are not reported when gone.
    default_storage.delete(kept)
    assert reconcile()["problems"] == []
