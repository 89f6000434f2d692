"""Group commit in upload runs: a batch's files are made durable together,
and only then are its rows written, so no row ever names a file that a power
cut could lose; a crash at the durability step loses the whole batch, and the
resumed run stores it once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from albums import runs
from albums.models import Image, UploadFile, UploadRun
from albums.services import folder_import_create, image_key, upload_run_create
from albums.tests.builders import make_album
from imagineer_project.lib import storage
from imagineer_project.lib.storage import AtomicFileSystemStorage, durable_batch
from imagineer_project.runs import run_retry
from imagineer_project.testing import make_image_bytes, smaller_copy

FILES = 5


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "ROW_BATCH", 2)  # five files: batches of 2, 2, 1


def upload(capture: Any, count: int = FILES) -> UploadRun:
    files = [
        SimpleUploadedFile(f"{n}.png", make_image_bytes("PNG", seed=700 + n))
        for n in range(count)
    ]
    with capture(execute=True):  # Q_SYNC: the run executes as it is queued
        run = upload_run_create(files=files, album=make_album(), near_duplicates="keep")
    run.refresh_from_db()
    return run


def stored_keys() -> set[str]:
    root = Path(settings.MEDIA_ROOT)
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not str(p.relative_to(root)).startswith("staging/")
    }


@pytest.mark.django_db
def test_a_batch_rows_are_written_only_after_its_files_are_durable(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    seen: list[tuple[int, int, int]] = []
    real_sync = storage.DurableBatch.sync

    def watched(batch: storage.DurableBatch) -> None:
        # At the durability call: the rows so far, and this batch's files
        # still under temporary names only.
        finals = [p for p in batch.pending if p.exists()]
        seen.append((Image.objects.count(), UploadFile.objects.count(), len(finals)))
        real_sync(batch)

    monkeypatch.setattr(storage.DurableBatch, "sync", watched)
    run = upload(django_capture_on_commit_callbacks)

    assert run.status == UploadRun.Status.SUCCEEDED
    # One sync per batch; each sees the rows of the batches before it only.
    assert seen == [(0, 0, 0), (2, 2, 0), (4, 4, 0)]
    assert (run.created_count, run.progress_done) == (FILES, FILES)
    for image in Image.objects.all():
        assert image_key(image.sha256, "png") in stored_keys()


@pytest.mark.django_db
def test_a_crash_at_the_durability_step_loses_the_batch_whole_and_resumes(
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
    tmp_path: Path,
) -> None:
    real_sync = storage.DurableBatch.sync
    calls = []

    def power_cut(batch: storage.DurableBatch) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("power cut")
        real_sync(batch)

    monkeypatch.setattr(storage.DurableBatch, "sync", power_cut)
    folder = tmp_path / "in"  # a folder import: its files outlive a failure
    folder.mkdir()
    for n in range(FILES):
        (folder / f"{n}.png").write_bytes(make_image_bytes("PNG", seed=700 + n))
    with django_capture_on_commit_callbacks(execute=True):
        run = folder_import_create(
            folder=folder, album=make_album(), near_duplicates="keep"
        )
    run.refresh_from_db()

    assert run.status == UploadRun.Status.FAILED
    # The first batch whole; of the second, neither a row nor a file.
    assert Image.objects.count() == UploadFile.objects.count() == 2
    assert (run.progress_done, run.created_count) == (2, 2)
    keys = stored_keys()
    assert len([k for k in keys if k.startswith("images/")]) == 2
    assert not [k for k in keys if "/.tmp-" in f"/{k}"]

    monkeypatch.setattr(storage.DurableBatch, "sync", real_sync)
    with django_capture_on_commit_callbacks(execute=True):
        run_retry(run)
    run.refresh_from_db()
    assert run.status == UploadRun.Status.SUCCEEDED
    assert run.message == "5 created, 0 duplicate, 0 rejected, 0 from sidecar files"
    assert Image.objects.count() == FILES
    assert run.album.memberships.count() == FILES
    positions = UploadFile.objects.filter(run=run).values_list("position", flat=True)
    assert sorted(positions) == list(range(FILES))


@pytest.mark.django_db
def test_exact_duplicates_inside_one_batch_make_one_image(
    django_capture_on_commit_callbacks: Any,
) -> None:
    same = make_image_bytes("PNG", seed=801)
    files = [SimpleUploadedFile(f"{n}.png", same) for n in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        run = upload_run_create(files=files, album=make_album(), near_duplicates="keep")
    run.refresh_from_db()
    assert (run.created_count, run.duplicate_count) == (1, 1)
    assert Image.objects.count() == 1
    assert run.album.memberships.count() == 1


def test_files_of_a_batch_appear_under_their_keys_only_when_it_ends(
    tmp_path: Path,
) -> None:
    store = AtomicFileSystemStorage(location=tmp_path)
    with durable_batch():
        store.save("a/1.bin", ContentFile(b"one"))
        store.save("b/2.bin", ContentFile(b"two"))
        assert not store.exists("a/1.bin") and not store.exists("b/2.bin")
    assert store.open("a/1.bin").read() == b"one"
    assert store.open("b/2.bin").read() == b"two"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "1.bin",
        "2.bin",
    ]


def test_a_batch_that_fails_leaves_no_file_and_no_temporary(tmp_path: Path) -> None:
    store = AtomicFileSystemStorage(location=tmp_path)
    with pytest.raises(RuntimeError), durable_batch():
        store.save("a/1.bin", ContentFile(b"one"))
        raise RuntimeError("the batch failed")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("why", ["no syncfs on this system", "turned off"])
def test_without_syncfs_each_file_is_fsynced_before_its_rename_and_each_folder_after(
    why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    if why == "turned off":  # IMAGINEER_STORAGE_SYNCFS=0
        settings.STORAGE_SYNCFS = False
        monkeypatch.setattr(storage, "_syncfs", _refuse)
    else:
        monkeypatch.setattr(storage, "_syncfs", None)  # what non-Linux systems get
    synced: list[tuple[Path, bool]] = []
    real_fsync = storage._fsync

    def fsync(path: Path) -> None:
        renamed = (tmp_path / "a" / "1.bin").exists()
        synced.append((path, renamed))
        real_fsync(path)

    monkeypatch.setattr(storage, "_fsync", fsync)
    store = AtomicFileSystemStorage(location=tmp_path)
    with durable_batch():
        store.save("a/1.bin", ContentFile(b"one"))
        store.save("a/2.bin", ContentFile(b"two"))
        store.save("b/3.bin", ContentFile(b"three"))
    files = [(p.name.startswith(".tmp-"), renamed) for p, renamed in synced[:3]]
    assert files == [(True, False)] * 3  # the data, under temporary names
    assert sorted((p, renamed) for p, renamed in synced[3:]) == [
        (tmp_path / "a", True),
        (tmp_path / "b", True),
    ]


def _refuse(fd: int) -> int:
    raise AssertionError("syncfs called although IMAGINEER_STORAGE_SYNCFS is off")


@pytest.mark.django_db
def test_an_upload_run_on_s3_stores_every_batch_in_the_bucket(
    s3_bucket: Any, django_capture_on_commit_callbacks: Any
) -> None:
    run = upload(django_capture_on_commit_callbacks, count=3)
    assert run.status == UploadRun.Status.SUCCEEDED
    listing = s3_bucket.list_objects_v2(Bucket="media").get("Contents", [])
    keys = {obj["Key"] for obj in listing}
    images = list(Image.objects.all())
    assert len(images) == 3
    assert {im.file.name for im in images} <= keys


@pytest.mark.django_db
def test_a_batch_replacing_its_own_image_then_meeting_it_again_links_the_larger(
    django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch: a picture, its larger copy (which replaces it: deleted, as
    the batch stored it), then the same small bytes again, found as a near
    duplicate of the larger copy, not as the deleted row."""
    monkeypatch.setattr(runs, "ROW_BATCH", 3)
    picture = make_image_bytes("JPEG", (480, 360), seed=101)
    small = smaller_copy(picture)
    files = [
        SimpleUploadedFile(name, data)
        for name, data in (("a.jpg", small), ("b.jpg", picture), ("c.jpg", small))
    ]
    with django_capture_on_commit_callbacks(execute=True):
        run = upload_run_create(
            files=files, album=make_album(), near_duplicates="replace_smaller"
        )
    run.refresh_from_db()
    assert run.status == UploadRun.Status.SUCCEEDED, run.error
    big = Image.objects.get()
    assert (big.width, big.height) == (480, 360)
    assert list(run.album.images.all()) == [big]
    rows = run.files.order_by("position")
    assert [(r.filename, r.status, r.image_id) for r in rows] == [
        ("a.jpg", "created", None),  # replaced by b.jpg, and deleted
        ("b.jpg", "created", big.pk),
        ("c.jpg", "duplicate", big.pk),
    ]
