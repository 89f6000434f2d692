from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from albums.models import Album, AlbumImage, Image, SourceKind, UploadRun
from albums.services import (
    album_add_images,
    image_thumbnail_key,
    thumbnail_key,
    upload_run_create,
)
from albums.tests.builders import make_album, make_image
from imagineer_project.runs import BaseRun
from imagineer_project.testing import admin_listed as listed
from imagineer_project.testing import make_image_bytes, query_count
from labeling.models import Label

pytestmark = pytest.mark.django_db

IMAGES = "/admin/albums/image/"
ALBUMS = "/admin/albums/album/"
RUNS = "/admin/albums/uploadrun/"


def act(client: Any, action: str, images: list[Image], **extra: Any) -> Any:
    data = {"action": action, "_selected_action": [im.pk for im in images], "index": 0}
    return client.post(IMAGES, data | extra)


def stored_paths(image: Image) -> list[Path]:
    """The original and every thumbnail size (some are made only on first use)."""
    root = Path(settings.MEDIA_ROOT)
    keys = [
        image.file.name,
        *(thumbnail_key(image.sha256, s) for s in settings.IMAGINEER_THUMBNAIL_SIZES),
    ]
    return [root / key for key in keys]


def make_all_thumbnails(image: Image) -> None:
    """Render the sizes made on first use too, so deletes must remove them."""
    for size in settings.IMAGINEER_THUMBNAIL_SIZES:
        image_thumbnail_key(image, size)


# --- image changelist ------------------------------------------------------------


def test_image_changelist_queries_do_not_grow_with_images(admin_client: Any) -> None:
    album = make_album()
    for seed in range(5):
        image = make_image(album=album, seed=seed)
        Label.objects.create(image=image, kind="caption", text=f"caption {seed}")
    few = query_count(admin_client, IMAGES)
    for seed in range(5, 25):
        make_image(album=album, seed=seed)

    assert query_count(admin_client, IMAGES) == few
    response = admin_client.get(IMAGES)
    assert len(listed(response)) == 25
    image = Image.objects.first()
    assert f'src="/api/images/{image.pk}/thumbnail?size=256"' in response.text


def test_search_by_filename(admin_client: Any) -> None:
    wanted = make_image(seed=1, original_filename="sunset-beach.jpg")
    make_image(seed=2, original_filename="forest.jpg")

    assert listed(admin_client.get(IMAGES, {"q": "sunset"})) == [wanted.pk]


def test_search_by_source_url(admin_client: Any) -> None:
    wanted = make_image(seed=1, source_url="https://example.org/cards/tower.png")
    make_image(seed=2, source_url="https://example.org/cards/moon.png")

    assert listed(admin_client.get(IMAGES, {"q": "tower"})) == [wanted.pk]


def test_search_by_label_text_lists_each_image_once(admin_client: Any) -> None:
    wanted = make_image(seed=1)
    other = make_image(seed=2)
    Label.objects.create(image=wanted, kind="caption", text="a golden chalice")
    Label.objects.create(image=wanted, kind="tag", text="chalice")
    Label.objects.create(image=other, kind="tag", text="sword")

    assert listed(admin_client.get(IMAGES, {"q": "chalice"})) == [wanted.pk]


def test_filter_by_album(admin_client: Any) -> None:
    album, other = make_album(name="Major arcana"), make_album(name="Minor arcana")
    inside = make_image(album=album, seed=1)
    make_image(album=other, seed=2)
    make_image(seed=3)

    assert listed(admin_client.get(IMAGES, {"album": album.pk})) == [inside.pk]


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("is_nsfw", True, {"is_nsfw__exact": "1"}),
        ("review_status", "approved", {"review_status__exact": "approved"}),
        ("source_kind", SourceKind.SCRAPE, {"source_kind__exact": "scrape"}),
        ("visibility", "private", {"visibility__exact": "private"}),
    ],
)
def test_filter_by_field(
    admin_client: Any, field: str, value: Any, param: dict[str, str]
) -> None:
    wanted = make_image(seed=1, **{field: value})
    make_image(seed=2)

    assert listed(admin_client.get(IMAGES, param)) == [wanted.pk]


def test_filter_by_format(admin_client: Any) -> None:
    png = make_image(seed=1, fmt="PNG")
    make_image(seed=2, fmt="JPEG")

    assert listed(admin_client.get(IMAGES, {"format__exact": "PNG"})) == [png.pk]


def test_filter_by_size(admin_client: Any) -> None:
    small = make_image(seed=1, size=(300, 200))
    medium = make_image(seed=2, size=(100, 800))
    large = make_image(seed=3, size=(2048, 64))

    assert listed(admin_client.get(IMAGES, {"size": "small"})) == [small.pk]
    assert listed(admin_client.get(IMAGES, {"size": "medium"})) == [medium.pk]
    assert listed(admin_client.get(IMAGES, {"size": "large"})) == [large.pk]


# --- image actions ---------------------------------------------------------------


def test_action_mark_nsfw(admin_client: Any) -> None:
    chosen, untouched = make_image(seed=1), make_image(seed=2)

    response = act(admin_client, "mark_nsfw", [chosen])

    assert response.status_code == 302
    assert Image.objects.get(pk=chosen.pk).is_nsfw
    assert not Image.objects.get(pk=untouched.pk).is_nsfw


def test_action_mark_safe(admin_client: Any) -> None:
    image = make_image(seed=1, is_nsfw=True)

    act(admin_client, "mark_safe", [image])

    assert not Image.objects.get(pk=image.pk).is_nsfw


def test_action_approve(admin_client: Any) -> None:
    image = make_image(seed=1)

    act(admin_client, "approve", [image])

    assert Image.objects.get(pk=image.pk).review_status == "approved"


def test_action_reject(admin_client: Any) -> None:
    image = make_image(seed=1)

    act(admin_client, "reject", [image])

    assert Image.objects.get(pk=image.pk).review_status == "rejected"


def test_action_make_private(admin_client: Any) -> None:
    image = make_image(seed=1)

    act(admin_client, "make_private", [image])

    assert Image.objects.get(pk=image.pk).visibility == "private"


def test_action_make_public(admin_client: Any) -> None:
    image = make_image(seed=1, visibility="private")

    act(admin_client, "make_public", [image])

    assert Image.objects.get(pk=image.pk).visibility == "public"


def test_action_add_to_album_through_the_intermediate_page(admin_client: Any) -> None:
    album = make_album(name="Picks")
    first, second, left_out = (make_image(seed=s) for s in (1, 2, 3))

    page = act(admin_client, "add_to_album", [first, second])
    assert page.status_code == 200
    assert "2 images selected" in page.text
    assert f'<option value="{album.pk}">Picks</option>' in page.text

    done = admin_client.post(
        IMAGES,
        {
            "action": "add_to_album",
            "_selected_action": [first.pk, second.pk],
            "select_across": "0",
            "apply": "yes",
            "album": album.pk,
        },
    )

    assert done.status_code == 302
    members = AlbumImage.objects.filter(album=album).order_by("position")
    assert [m.image_id for m in members] == [first.pk, second.pk]
    assert left_out.pk not in {m.image_id for m in members}


def test_action_remove_from_album_keeps_the_images(admin_client: Any) -> None:
    album = make_album(name="Picks")
    removed, kept = make_image(album=album, seed=1), make_image(album=album, seed=2)

    page = act(admin_client, "remove_from_album", [removed])
    assert page.status_code == 200
    assert f'<option value="{album.pk}">Picks</option>' in page.text
    admin_client.post(
        IMAGES,
        {
            "action": "remove_from_album",
            "_selected_action": [removed.pk],
            "select_across": "0",
            "apply": "yes",
            "album": album.pk,
        },
    )

    assert list(album.images.all()) == [kept]
    assert Image.objects.filter(pk=removed.pk).exists()


def test_action_delete_removes_rows_and_files(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    doomed, kept = make_image(seed=1), make_image(seed=2)
    Label.objects.create(image=doomed, kind="tag", text="gone")
    make_all_thumbnails(doomed)
    assert sum(p.exists() for p in stored_paths(doomed)) >= 2  # original + thumbs

    confirm = act(admin_client, "delete_selected", [doomed])
    assert confirm.status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            IMAGES,
            {
                "action": "delete_selected",
                "_selected_action": [doomed.pk],
                "post": "yes",
            },
        )

    assert response.status_code == 302
    assert list(Image.objects.all()) == [kept]
    assert not Label.objects.exists()
    assert not any(p.exists() for p in stored_paths(doomed))
    assert stored_paths(kept)[0].exists()


def test_delete_from_the_change_page_removes_files(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    image = make_image(seed=1)
    make_all_thumbnails(image)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{IMAGES}{image.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Image.objects.exists()
    assert not any(p.exists() for p in stored_paths(image))


# --- image change page ------------------------------------------------------------


def test_image_change_page_shows_preview_provenance_and_labels(
    admin_client: Any,
) -> None:
    album = make_album(name="Tarot")
    image = make_image(album=album, seed=1, source_url="https://example.org/a.jpg")
    Label.objects.create(
        image=image, kind="caption", text="a tower struck by lightning"
    )

    response = admin_client.get(f"{IMAGES}{image.pk}/change/")

    assert response.status_code == 200
    assert f'href="/api/images/{image.pk}/file"' in response.text
    assert f'src="/api/images/{image.pk}/thumbnail?size=512"' in response.text
    assert "https://example.org/a.jpg" in response.text
    assert image.sha256 in response.text
    assert "a tower struck by lightning" in response.text
    assert 'name="labels-TOTAL_FORMS"' in response.text
    assert 'name="sha256"' not in response.text  # read-only, not an input


def test_image_change_page_saves_a_new_inline_label(admin_client: Any) -> None:
    image = make_image(seed=1)

    response = admin_client.post(
        f"{IMAGES}{image.pk}/change/",
        {
            "is_nsfw": "on",
            "visibility": "public",
            "review_status": "approved",
            "labels-TOTAL_FORMS": "1",
            "labels-INITIAL_FORMS": "0",
            "labels-MIN_NUM_FORMS": "0",
            "labels-MAX_NUM_FORMS": "1000",
            "labels-0-kind": "caption",
            "labels-0-text": "a red square",
            "labels-0-source": "human",
            "labels-0-review": "unreviewed",
            "labels-0-model_name": "",
            "labels-0-confidence": "",
            "labels-0-id": "",
            "labels-0-image": image.pk,
        },
    )

    assert response.status_code == 302
    label = Label.objects.get(image=image)
    assert (label.kind, label.text, label.source) == (
        "caption",
        "a red square",
        "human",
    )
    assert label.author.username == "admin"
    image.refresh_from_db()
    assert (image.is_nsfw, image.review_status) == (True, "approved")


def test_images_cannot_be_added_by_hand(admin_client: Any) -> None:
    assert admin_client.get(f"{IMAGES}add/").status_code == 403


# --- albums ----------------------------------------------------------------------


def test_album_changelist_counts_images_in_constant_queries(admin_client: Any) -> None:
    for n in range(2):
        album = make_album(name=f"Album {n}")
        make_image(album=album, seed=n)
    few = query_count(admin_client, ALBUMS)
    for n in range(2, 8):
        album = make_album(name=f"Album {n}")
        make_image(album=album, seed=n)
        make_image(album=album, seed=100 + n)

    assert query_count(admin_client, ALBUMS) == few
    response = admin_client.get(ALBUMS, {"q": "Album 7"})
    assert [a.image_count for a in response.context["cl"].result_list] == [2]


def test_album_change_page_links_to_its_images_and_upload(admin_client: Any) -> None:
    album = make_album(name="Tarot")
    make_image(album=album, seed=1)

    response = admin_client.get(f"{ALBUMS}{album.pk}/change/")

    assert f'href="{IMAGES}?album={album.pk}"' in response.text
    assert "1 image(s) in this album" in response.text
    assert f'href="{ALBUMS}{album.pk}/upload/"' in response.text


def test_album_add_records_the_creator(admin_client: Any) -> None:
    response = admin_client.post(
        f"{ALBUMS}add/",
        {
            "name": "New deck",
            "slug": "new-deck",
            "description": "",
            "source_kind": "manual",
            "visibility": "public",
        },
    )

    assert response.status_code == 302
    assert Album.objects.get(slug="new-deck").created_by.username == "admin"


def test_album_upload_page_offers_files_and_a_folder(admin_client: Any) -> None:
    album = make_album()

    response = admin_client.get(f"{ALBUMS}{album.pk}/upload/")

    assert response.status_code == 200
    assert 'type="file" name="files"' in response.text
    assert 'accept="image/*,.zip,application/zip,.txt,text/plain"' in response.text
    assert "webkitdirectory" in response.text


def test_album_upload_ingests_jpegs_and_a_zip(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    album = make_album(name="Uploads")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("deck/c.jpg", make_image_bytes(seed=3))
        zf.writestr("deck/d.jpg", make_image_bytes(seed=4))
    files = [
        SimpleUploadedFile("a.jpg", make_image_bytes(seed=1), "image/jpeg"),
        SimpleUploadedFile("b.jpg", make_image_bytes(seed=2), "image/jpeg"),
        SimpleUploadedFile("deck.zip", archive.getvalue(), "application/zip"),
    ]

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{ALBUMS}{album.pk}/upload/", {"files": files})

    run = UploadRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{ALBUMS}{album.pk}/change/"  # on the album
    assert (run.status, run.created_count, run.rejected_count) == ("succeeded", 4, 0)
    assert sorted(album.images.values_list("original_filename", flat=True)) == [
        "a.jpg",
        "b.jpg",
        "c.jpg",
        "d.jpg",
    ]
    landing = admin_client.get(response["Location"])
    assert "Uploaded 3 file(s)" in landing.text
    assert f'<a href="{RUNS}{run.pk}/change/">follow upload #{run.pk}</a>' in (
        landing.text
    )
    page = admin_client.get(f"{RUNS}{run.pk}/change/")
    assert "<td>deck.zip/deck/c.jpg</td><td>created</td>" in page.text


def test_album_upload_takes_a_folder(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    album = make_album()
    folder = [SimpleUploadedFile("x.png", make_image_bytes("PNG", seed=5))]

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(f"{ALBUMS}{album.pk}/upload/", {"folder": folder})

    assert UploadRun.objects.get().status == "succeeded"
    assert album.images.count() == 1


def test_album_upload_needs_a_file(admin_client: Any) -> None:
    album = make_album()

    response = admin_client.post(f"{ALBUMS}{album.pk}/upload/", {})

    assert response.status_code == 200
    assert "Choose some files or a folder." in response.text
    assert not UploadRun.objects.exists()


def test_album_delete_removes_only_images_no_other_album_holds(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    album, other = make_album(name="Doomed"), make_album(name="Other")
    only_here = make_image(album=album, seed=1)
    shared = make_image(album=album, seed=2)
    album_add_images(album=other, images=[shared])

    confirm = admin_client.get(f"{ALBUMS}{album.pk}/delete/")
    assert "images that other albums also hold are kept" in confirm.text
    assert "(1 image)" in confirm.text
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(f"{ALBUMS}{album.pk}/delete/", {"post": "yes"})

    assert not Album.objects.filter(pk=album.pk).exists()
    assert list(Image.objects.all()) == [shared]
    assert not any(p.exists() for p in stored_paths(only_here))


def test_album_bulk_delete_action_goes_through_the_service(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    album = make_album(name="Doomed")
    make_image(album=album, seed=1)

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            ALBUMS,
            {
                "action": "delete_selected",
                "_selected_action": [album.pk],
                "post": "yes",
            },
        )

    assert not Album.objects.exists()
    assert not Image.objects.exists()


# --- upload runs -----------------------------------------------------------------


def make_run(**fields: Any) -> UploadRun:
    return UploadRun.objects.create(
        album=fields.pop("album", None) or make_album(), **fields
    )


def test_upload_run_changelist_shows_progress(admin_client: Any) -> None:
    make_run(status="running", progress_done=3, progress_total=10)

    response = admin_client.get(RUNS)

    assert response.status_code == 200
    assert "3/10" in response.text


def test_active_upload_run_page_refreshes_and_offers_cancel(admin_client: Any) -> None:
    image = make_image(seed=1)
    run = make_run(status="running", progress_done=1, progress_total=4)
    run.files.create(position=0, filename="a.jpg", status="created", image=image)
    run.files.create(
        position=1,
        filename="bad.txt",
        status="rejected",
        code="unsupported",
        reason="Not a recognised image",
    )

    response = admin_client.get(f"{RUNS}{run.pk}/change/")

    assert '<meta http-equiv="refresh" content="3">' in response.text
    assert '<progress max="100" value="25"' in response.text
    assert f'href="{IMAGES}{image.pk}/change/"' in response.text
    assert "Not a recognised image" in response.text
    assert f'action="{RUNS}{run.pk}/cancel/"' in response.text
    assert 'name="_save"' not in response.text


def test_finished_upload_run_page_is_still(admin_client: Any) -> None:
    run = make_run(status="succeeded", progress_done=2, progress_total=2)

    response = admin_client.get(f"{RUNS}{run.pk}/change/")

    assert 'http-equiv="refresh"' not in response.text
    assert "/cancel/" not in response.text


def test_upload_run_cancel_button(admin_client: Any) -> None:
    run = make_run(status="running")

    response = admin_client.post(f"{RUNS}{run.pk}/cancel/")

    assert response["Location"] == f"{RUNS}{run.pk}/change/"
    assert UploadRun.objects.get(pk=run.pk).cancel_requested
    assert admin_client.get(f"{RUNS}{run.pk}/cancel/").status_code == 405


def test_upload_run_cancel_action(admin_client: Any) -> None:
    queued, running = make_run(), make_run(status="running")

    admin_client.post(
        RUNS,
        {
            "action": "cancel_selected",
            "index": 0,
            "_selected_action": [queued.pk, running.pk],
        },
    )

    queued.refresh_from_db()
    running.refresh_from_db()
    assert queued.status == BaseRun.Status.CANCELLED
    assert (running.status, running.cancel_requested) == ("running", True)


def test_upload_runs_cannot_be_added_by_hand(admin_client: Any) -> None:
    assert admin_client.get(f"{RUNS}add/").status_code == 403


def test_cancelling_a_queued_upload_discards_its_staged_files(
    admin_client: Any,
) -> None:
    album = make_album()
    upload = SimpleUploadedFile("a.jpg", make_image_bytes(seed=1))
    run = upload_run_create(files=[upload], album=album)  # on_commit never fires
    staged = Path(settings.MEDIA_ROOT) / run.staged_files[0]["key"]
    assert staged.exists()

    admin_client.post(f"{RUNS}{run.pk}/cancel/")

    run.refresh_from_db()
    assert run.status == BaseRun.Status.CANCELLED
    assert not staged.exists()
