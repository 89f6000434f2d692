"""Deleting albums from the admin: the confirmation pages say what goes (the
images only they hold, with their files' size) and the delete removes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from albums.models import Album, Image
from albums.services import album_add_images
from albums.tests.builders import make_album, make_image

pytestmark = pytest.mark.django_db

ALBUMS = "/admin/albums/album/"


def stored(image: Image) -> Path:
    return Path(settings.MEDIA_ROOT, image.file.name)


@pytest.fixture
def library() -> dict[str, Any]:
    doomed, also, other = (make_album(name=n) for n in ("Doomed", "Also", "Other"))
    only_doomed = [make_image(album=doomed, seed=n) for n in (1, 2)]
    in_both = make_image(album=doomed, seed=3)  # doomed and also: both selected
    album_add_images(album=also, images=[in_both])
    shared = make_image(album=doomed, seed=4)
    album_add_images(album=other, images=[shared])
    return {
        "doomed": doomed,
        "also": also,
        "other": other,
        "only_doomed": only_doomed,
        "in_both": in_both,
        "shared": shared,
    }


def test_delete_page_counts_and_sizes_the_images_that_go(
    admin_client: Any, library: dict[str, Any]
) -> None:
    going = library["only_doomed"]
    size = filesizeformat(sum(im.bytes for im in going))

    page = admin_client.get(f"{ALBUMS}{library['doomed'].pk}/delete/")

    assert page.status_code == 200
    assert "(2 images)" in page.text
    assert f"{size} of image files" in page.text
    assert "images that other albums also hold are kept (2)" in page.text
    assert f"2 image(s) no other album holds, with their files ({size})" in page.text
    assert Image.objects.count() == 4  # a GET deletes nothing


def test_delete_selected_names_the_images_only_the_selection_holds(
    admin_client: Any, library: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    selected = [library["doomed"].pk, library["also"].pk]
    going = [*library["only_doomed"], library["in_both"]]
    size = filesizeformat(sum(im.bytes for im in going))

    confirm = admin_client.post(
        ALBUMS, {"action": "delete_selected", "_selected_action": selected}
    )
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            ALBUMS,
            {"action": "delete_selected", "_selected_action": selected, "post": "yes"},
        )

    assert f"3 image(s) no other album holds, with their files ({size})" in (
        confirm.text
    )
    assert "Images: 3" in confirm.text
    assert list(Album.objects.all()) == [library["other"]]
    assert list(Image.objects.all()) == [library["shared"]]
    assert not any(stored(im).exists() for im in going)
    assert stored(library["shared"]).exists()
