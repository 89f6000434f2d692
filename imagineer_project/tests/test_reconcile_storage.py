"""reconcile-storage on real files: local storage (media under tmp_path) and
django-storages' S3 backend on moto. Orphans past the grace period go (or, in
a dry run, are only listed), young ones and referenced ones stay, and a row
whose file is missing is reported and kept."""

from __future__ import annotations

import os
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from albums.models import Image
from albums.services import thumbnail_key
from albums.tests.builders import make_image
from imagineer_project.maintenance.registry import STORAGE_OWNERS, StorageOwner
from imagineer_project.maintenance.runner import maintenance_run_now
from imagineer_project.maintenance.storage import KEPT_YOUNG, _s3_bucket

pytestmark = pytest.mark.django_db

DAY = 24 * 3600


def put(key: str, data: bytes, *, age_hours: float = 0) -> str:
    """A file in default storage, `age_hours` old (local storage only)."""
    name = default_storage.save(key, ContentFile(data))
    if age_hours:
        then = time.time() - age_hours * 3600
        os.utime(default_storage.path(name), (then, then))
    return name


def reconcile(*, dry_run: bool, **options: int) -> object:
    return maintenance_run_now(
        task="reconcile-storage", dry_run=dry_run, trigger="command", options=options
    )


@pytest.fixture
def library() -> dict[str, object]:
    """A library with every case: a kept image, one whose file is gone, old
    and young orphans, crash leftovers, a probe file and an unowned folder."""
    kept = make_image(seed=1)
    lost = make_image(seed=2)
    default_storage.delete(lost.file.name)
    old = {
        put("images/aa/bb/orphan.jpg", b"o" * 1000, age_hours=48): 1000,
        put("images/aa/bb/.tmp-x1y2", b"t" * 10, age_hours=30): 10,
        put("loras/deadbeef.safetensors", b"l" * 300, age_hours=100): 300,
        put("health/0123abcd", b"ok", age_hours=25): 2,
        put("other/.tmp-crash", b"c" * 7, age_hours=26): 7,
    }
    young = put("images/aa/bb/in-flight.jpg", b"y" * 50, age_hours=1)
    unowned = put("other/notes.txt", b"n" * 5, age_hours=500)
    return {"kept": kept, "lost": lost, "old": old, "young": young, "unowned": unowned}


def test_dry_run_lists_the_orphans_and_deletes_nothing(library) -> None:
    run = reconcile(dry_run=True)

    assert run.status == "succeeded", run.error
    removed = {item["name"]: item["size"] for item in run.report["removed"]}
    assert removed == library["old"]
    assert run.items_removed == 5
    assert run.bytes_freed == 1319
    assert run.message == (
        "Would remove 5 files (1.3 KB) (dry run); 1 problem to look at"
    )
    for key in library["old"]:
        assert default_storage.exists(key), key
    assert run.report["problems"] == [
        f"{library['lost'].file.name}: referenced by images (Image.file), "
        "not in storage"
    ]


def test_a_real_run_removes_old_orphans_and_keeps_the_rest(library) -> None:
    kept, lost = library["kept"], library["lost"]

    run = reconcile(dry_run=False)

    assert run.status == "succeeded", run.error
    assert run.message == "Removed 5 files (1.3 KB); 1 problem to look at"
    assert run.bytes_freed == 1319
    for key in library["old"]:
        assert not default_storage.exists(key), key
    assert default_storage.exists(library["young"])
    assert default_storage.exists(library["unowned"])
    assert default_storage.exists(kept.file.name)
    assert default_storage.exists(thumbnail_key(kept.sha256, 256))
    assert default_storage.exists(thumbnail_key(lost.sha256, 256))
    assert Image.objects.filter(pk=lost.pk).exists()  # reported, never deleted
    facts = run.report["facts"]
    assert facts[KEPT_YOUNG] == 1
    assert facts["missing files"] == 1
    assert facts["files under no owner"] == {"other": 1}
    assert facts["grace period (hours)"] == 24
    assert facts["prefixes"]["images/"]["orphans"] == 2
    # The first run took them: a second finds nothing new.
    again = reconcile(dry_run=False)
    assert again.message == "Nothing to remove; 1 problem to look at"


def test_grace_hours_option_overrides_the_setting(library) -> None:
    run = reconcile(dry_run=True, grace_hours=0)

    removed = {item["name"] for item in run.report["removed"]}
    assert library["young"] in removed
    assert run.report["facts"][KEPT_YOUNG] == 0


def test_a_missing_thumbnail_is_not_a_problem(settings) -> None:
    image = make_image(seed=3)
    default_storage.delete(thumbnail_key(image.sha256, 256))

    run = reconcile(dry_run=True)

    # Thumbnails are made again on demand; the 512 size was never made.
    assert run.report["problems"] == []
    assert run.message == "Nothing to remove (dry run)"


def test_an_orphan_that_gets_a_row_during_the_pass_stays(monkeypatch) -> None:
    # An ingest of the same bytes gives an old orphan a row again while the
    # pass lists files (the key is the content hash, so the file is not
    # rewritten): the rows are asked again before anything is deleted.
    key = put("race/aa.bin", b"r" * 10, age_hours=48)
    gone = "race/gone.bin"  # a row deleted, with its file, during the pass
    answers = iter([[gone], [key]])
    owner = StorageOwner("race/", lambda: next(answers), "race rows", True)
    monkeypatch.setitem(STORAGE_OWNERS, "race/", owner)

    run = reconcile(dry_run=False)

    assert run.status == "succeeded", run.error
    assert default_storage.exists(key)
    assert run.report["removed"] == []
    assert run.report["problems"] == []


# --- S3 (moto) ----------------------------------------------------------------------


@pytest.fixture
def s3_location() -> str:
    return "lib"


def bucket_keys(client) -> set[str]:
    listing = client.list_objects_v2(Bucket="media")
    return {obj["Key"] for obj in listing.get("Contents", [])}


def test_on_s3_orphans_go_once_past_the_grace_period(s3_bucket) -> None:
    # moto dates every object now, so the grace period is moved instead of
    # the files: 24 h keeps a fresh orphan, 0 h makes it due.
    assert _s3_bucket(default_storage) is not None  # one listing per prefix
    kept = make_image(seed=4)
    lost = make_image(seed=5)
    default_storage.delete(lost.file.name)
    orphan = put("images/aa/bb/orphan.jpg", b"o" * 1000)
    leftover = put("other/.tmp-crash", b"c" * 7)
    unowned = put("other/notes.txt", b"n" * 5)
    missing = f"{lost.file.name}: referenced by images (Image.file), not in storage"

    young = reconcile(dry_run=False)
    assert young.status == "succeeded", young.error
    assert young.items_removed == 0
    assert young.report["facts"][KEPT_YOUNG] == 2
    assert young.report["problems"] == [missing]

    dry = reconcile(dry_run=True, grace_hours=0)
    assert {item["name"] for item in dry.report["removed"]} == {orphan, leftover}
    assert f"lib/{orphan}" in bucket_keys(s3_bucket)

    real = reconcile(dry_run=False, grace_hours=0)
    assert real.message == "Removed 2 files (1007 bytes); 1 problem to look at"
    keys = bucket_keys(s3_bucket)
    assert f"lib/{orphan}" not in keys
    assert f"lib/{leftover}" not in keys
    assert f"lib/{unowned}" in keys
    assert f"lib/{kept.file.name}" in keys
    assert real.report["facts"]["files under no owner"] == {"other": 1}
    assert Image.objects.filter(pk=lost.pk).exists()
