"""Bulk uploads and folder imports refuse to start below the disk floor
(DISK_FREE_FLOOR_BYTES), saying why, and stage nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from albums.models import Album, UploadRun
from imagineer_project.testing import make_image_bytes

pytestmark = pytest.mark.django_db

GB = 1024**3
REFUSAL = (
    "Only 512 MB free where images are stored; at least 1 GB is needed "
    "(DISK_FREE_FLOOR_BYTES)."
)


@pytest.fixture
def low_disk(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.DISK_FREE_FLOOR_BYTES = GB

    def usage(path: Any) -> Any:
        free = 512 * 1024**2
        return shutil._ntuple_diskusage(100 * GB, 100 * GB - free, free)

    monkeypatch.setattr(shutil, "disk_usage", usage)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_a_bulk_upload_below_the_floor_is_refused_and_stages_nothing(
    staff_client, low_disk, settings
) -> None:
    photo = make_image_bytes("JPEG", (40, 30), seed=1)
    response = staff_client.post(
        "/api/images/bulk-upload",
        {
            "files": [SimpleUploadedFile("a.jpg", photo, "image/jpeg")],
            "album_name": "Cards",
        },
    )
    assert response.status_code == 507
    body = response.json()
    assert (body["error"], body["error_code"]) == (REFUSAL, "insufficient_storage")
    assert body["details"] == {"role": "media", "free": 512 * 1024**2, "floor": GB}
    assert UploadRun.objects.count() == 0
    assert files_under(Path(settings.MEDIA_ROOT)) == []


def test_a_bulk_upload_at_the_floor_goes_ahead(staff_client, settings, monkeypatch):
    settings.DISK_FREE_FLOOR_BYTES = GB
    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(2 * GB, GB, GB)
    )
    photo = make_image_bytes("JPEG", (40, 30), seed=1)
    response = staff_client.post(
        "/api/images/bulk-upload",
        {"files": [SimpleUploadedFile("a.jpg", photo)], "album_name": "Cards"},
    )
    assert response.status_code == 202
    assert UploadRun.objects.count() == 1


def test_a_folder_import_below_the_floor_is_refused(low_disk, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(make_image_bytes("JPEG", (40, 30), seed=1))
    with pytest.raises(CommandError, match="Only 512 MB free where images are"):
        call_command("import_images", str(folder), "--album", "Cards", "--enqueue")
    assert UploadRun.objects.count() == 0


def test_remote_storage_has_no_local_floor(staff_client, low_disk, settings) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    response = staff_client.post(
        "/api/images/bulk-upload",
        {
            "files": [SimpleUploadedFile("a.jpg", make_image_bytes("JPEG", seed=2))],
            "album_name": "Cards",
        },
    )
    assert response.status_code == 202
    assert Album.objects.filter(name="Cards").exists()


def test_an_inline_upload_below_the_floor_is_refused_and_stores_nothing(
    staff_client, low_disk, settings
) -> None:
    photo = make_image_bytes("JPEG", (40, 30), seed=1)
    response = staff_client.post(
        "/api/images/upload",
        {"files": [SimpleUploadedFile("a.jpg", photo)], "album_name": "Cards"},
    )
    assert response.status_code == 507
    assert response.json()["error"] == REFUSAL
    assert files_under(Path(settings.MEDIA_ROOT)) == []


def test_the_admin_upload_page_says_why_below_the_floor(
    admin_client, low_disk, settings
) -> None:
    album = Album.objects.create(name="Cards", slug="cards")
    photo = make_image_bytes("JPEG", (40, 30), seed=1)
    response = admin_client.post(
        f"/admin/albums/album/{album.pk}/upload/",
        {"files": [SimpleUploadedFile("a.jpg", photo, "image/jpeg")]},
    )
    assert response.status_code == 200
    assert REFUSAL in response.text
    assert UploadRun.objects.count() == 0
    assert files_under(Path(settings.MEDIA_ROOT)) == []
