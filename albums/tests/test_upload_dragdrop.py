"""The album upload page: `.txt` captions paired with their images by the folder
import's rule (paths from the drop zone, else base names), a lone `.txt`
reported, dropping files and a folder in a real Chromium, and a new album
landing on its own page."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from albums.models import Album, UploadRun
from albums.selectors import upload_run_results
from albums.tasks import process_upload_run
from albums.tests.builders import make_album
from imagineer_project.testing import make_image_bytes
from imagineer_project.testing.browser import drop_files, staff_page
from labeling.models import Label

ALBUMS = "/admin/albums/album/"
RUNS = "/admin/albums/uploadrun/"


def png(name: str, seed: int) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, make_image_bytes("PNG", seed=seed), "image/png")


def txt(name: str, text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), "text/plain")


def captions(album: Album) -> dict[str, tuple[str, str]]:
    labels = Label.objects.filter(image__memberships__album=album, kind="caption")
    return {
        label.image.original_filename: (label.text, label.source)
        for label in labels.select_related("image")
    }


@pytest.mark.django_db
def test_txt_beside_an_image_becomes_its_caption_and_a_lone_one_is_reported(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    album = make_album(name="Tarot")
    files = [
        png("card.png", 1),
        png("card.png", 2),  # the same name in another folder
        txt("card.txt", "the fool, a wanderer at a cliff edge"),
        txt("notes.txt", "not a caption"),
    ]
    paths = ["major/card.png", "minor/card.png", "major/card.txt", "notes.txt"]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"{ALBUMS}{album.pk}/upload/", {"files": files, "paths": paths}
        )

    run = UploadRun.objects.get()
    assert response["Location"] == f"{ALBUMS}{album.pk}/change/"
    run.refresh_from_db()
    assert (run.status, run.created_count, run.rejected_count) == ("succeeded", 2, 1)
    assert run.sidecar_count == 1
    results = upload_run_results(run)
    image_ids = {r["filename"]: r.get("image_id") for r in results}
    caption = Label.objects.get(kind="caption")
    assert (caption.image_id, caption.text, caption.source) == (
        image_ids["major/card.png"],  # not minor/card.png
        "the fool, a wanderer at a cliff edge",
        "sidecar",
    )
    rejected = [r for r in results if r["status"] == "rejected"]
    assert [(r["filename"], r["code"]) for r in rejected] == [
        ("notes.txt", "sidecar_alone")
    ]
    page = admin_client.get(f"{RUNS}{run.pk}/change/").text
    assert "Uploaded 4 file(s) into “Tarot”, 1 of them caption file(s)" in page
    assert "with no image of the same name beside it" in page

    # Delivered again: nothing is added twice.
    UploadRun.objects.filter(pk=run.pk).update(status="queued")
    run.files.all().delete()
    process_upload_run(run.pk)
    assert album.images.count() == 2
    assert Label.objects.filter(kind="caption").count() == 1


@pytest.mark.django_db
def test_without_the_script_captions_pair_by_file_name(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    album = make_album()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            f"{ALBUMS}{album.pk}/upload/",
            {"folder": [png("a.png", 3), txt("a.txt", "  a red circle \n")]},
        )
    assert UploadRun.objects.get().status == "succeeded"
    assert captions(album) == {"a.png": ("a red circle", "sidecar")}


@pytest.mark.django_db
def test_the_upload_page_takes_txt_files_and_has_a_drop_zone(
    admin_client: Any,
) -> None:
    album = make_album()
    page = admin_client.get(f"{ALBUMS}{album.pk}/upload/").text
    assert 'accept="image/*,.zip,application/zip,.txt,text/plain"' in page
    assert 'id="upload-drop"' in page and "imagineer/upload.js" in page


@pytest.mark.django_db
def test_saving_a_new_album_lands_on_its_page(admin_client: Any) -> None:
    form = {"name": "New deck", "slug": "new-deck", "source_kind": "manual"}
    response = admin_client.post(f"{ALBUMS}add/", {**form, "visibility": "public"})
    album = Album.objects.get(slug="new-deck")
    assert response["Location"] == f"{ALBUMS}{album.pk}/change/"
    another = admin_client.post(
        f"{ALBUMS}add/",
        {
            **form,
            "name": "Next",
            "slug": "next",
            "visibility": "public",
            "_addanother": "1",
        },
    )
    assert another["Location"] == f"{ALBUMS}add/"


# --- in a real browser --------------------------------------------------------------


@pytest.mark.browser
def test_dropping_two_images_and_a_caption_uploads_them_with_the_caption(
    browser: Any, live_server: Any, transactional_db: Any
) -> None:
    album = make_album(name="Tarot deck")
    upload = f"{ALBUMS}{album.pk}/upload/"
    page = staff_page(browser, live_server.url, next_path=upload, timeout_ms=10000)

    drop_files(
        page,
        "#upload-drop",
        [
            ("fool.png", make_image_bytes("PNG", seed=1), "image/png"),
            ("magician.png", make_image_bytes("PNG", seed=2), "image/png"),
            ("fool.txt", b"the fool at the cliff edge", "text/plain"),
        ],
    )
    summary = page.locator("#upload-summary")
    summary.filter(has_text="3 files chosen").wait_for()
    assert "(1 caption file)" in summary.inner_text()
    listed = page.locator("#upload-list li").all_inner_texts()
    assert any("fool.txt" in li and "caption of fool.png" in li for li in listed)

    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}{ALBUMS}{album.pk}/change/")
    assert "1 of them caption file(s)" in page.locator(".messagelist").inner_text()
    run = UploadRun.objects.get()
    assert (run.status, run.created_count, run.sidecar_count) == ("succeeded", 2, 1)
    assert sorted(album.images.values_list("original_filename", flat=True)) == [
        "fool.png",
        "magician.png",
    ]
    assert captions(album) == {"fool.png": ("the fool at the cliff edge", "sidecar")}
