"""No page or list costs more queries for more rows: the same number for a
page of 3 and a page of 30, for visitors and for staff."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from albums import views
from albums.models import Album, Image
from albums.services import album_add_images, images_set
from albums.tests.builders import make_album, make_image

pytestmark = pytest.mark.django_db


def queries(get: Callable[[], object]) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = get()
    assert response.status_code == 200, response
    return len(captured)


def library(albums: int, images: int) -> tuple[list[Album], list[Image]]:
    made = [make_album(name=f"Album {n}") for n in range(albums)]
    pictures = [make_image(seed=n, size=(16, 12)) for n in range(images)]
    for album in made:
        album_add_images(album=album, images=pictures)
    images_set(image_ids=[pictures[1].pk], is_nsfw=True)
    return made, pictures


@pytest.fixture(params=["visitor", "staff"])
def caller(request, staff_client) -> Client:
    return staff_client if request.param == "staff" else Client()


def test_the_image_list_costs_the_same_for_10_and_30_images(caller) -> None:
    library(1, 31)
    small = queries(lambda: caller.get("/api/images?limit=3"))
    large = queries(lambda: caller.get("/api/images?limit=30"))
    assert small == large


def test_the_album_list_and_home_page_cost_the_same_for_more_albums(
    caller, monkeypatch
) -> None:
    library(6, 6)
    monkeypatch.setattr(views, "GALLERY_PAGE_SIZE", 2)
    small_home = queries(lambda: caller.get("/"))
    small_api = queries(lambda: caller.get("/api/albums?limit=2"))
    # Five of six: still more than one page (one page alone is not counted).
    monkeypatch.setattr(views, "GALLERY_PAGE_SIZE", 5)
    assert queries(lambda: caller.get("/")) == small_home
    assert queries(lambda: caller.get("/?page=2")) == small_home
    assert queries(lambda: caller.get("/api/albums?limit=6")) == small_api


def test_the_album_page_costs_the_same_for_a_longer_page(caller, monkeypatch) -> None:
    albums, _ = library(1, 31)
    url = albums[0].get_absolute_url()
    monkeypatch.setattr(views, "ALBUM_PAGE_SIZE", 3)
    small = queries(lambda: caller.get(url))
    monkeypatch.setattr(views, "ALBUM_PAGE_SIZE", 30)
    response = caller.get(url)
    assert response.text.count('class="tile') >= 29
    assert queries(lambda: caller.get(url)) == small


def test_the_image_page_costs_the_same_in_more_albums(caller) -> None:
    albums, images = library(1, 2)
    few = queries(lambda: caller.get(images[0].get_absolute_url()))
    for n in range(8):
        album_add_images(album=make_album(name=f"More {n}"), images=[images[0]])
    assert queries(lambda: caller.get(images[0].get_absolute_url())) == few


def test_the_album_page_does_not_count_its_members_for_visitors(client) -> None:
    # (Staff also see labeling's coverage section, which counts for them.)
    albums, _ = library(1, 5)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(albums[0].get_absolute_url())
    assert [q["sql"] for q in captured if "COUNT(" in q["sql"].upper()] == []
    assert "4 images" in response.text
