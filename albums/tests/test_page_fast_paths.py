"""The pages' cheaper paths show what the slower ones showed: the image list
renders exactly what its schema renders, the album page's tiles are the
`_thumb.html` partial, the home page's first page is not counted; and the
queries of each page stay the same however long the page is."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client
from django.test.utils import CaptureQueriesContext

from albums import views
from albums.models import Image
from albums.schemas import ImageOut
from albums.services import album_add_images
from albums.tests.builders import make_album, make_image
from imagineer_project.api import api
from imagineer_project.pagination import PageOut

pytestmark = pytest.mark.django_db


def sql_of(get: Any) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = get()
    assert response.status_code == 200, response
    return [q["sql"] for q in captured]


def tiles(html: str) -> list[str]:
    """Each tile's markup, whitespace between tags dropped."""
    found = re.findall(r'<a class="tile.*?</a>', html, flags=re.S)
    return [re.sub(r">\s+<", "><", tile.strip()) for tile in found]


@pytest.mark.parametrize("query", ["", "&source_kind=upload"])
def test_the_image_list_is_byte_for_byte_what_its_schema_renders(
    staff_client: Any, query: str
) -> None:
    # Unfiltered (SQL compiled once) and filtered (built per request).
    make_image(seed=1, source_url="https://example.com/a.png?x=1&y=<2>")
    make_image(seed=2, is_nsfw=True, visibility="private")
    make_image(seed=3, original_filename='quote " and é.jpg', is_animated=True)
    newest = list(Image.objects.order_by("-id")[:2])

    response = staff_client.get(f"/api/images?limit=2{query}")

    schema = PageOut[ImageOut].model_validate(
        {"items": newest, "next_cursor": str(newest[-1].pk)}
    )
    expected = api.renderer.render(None, schema.model_dump(), response_status=200)
    assert response.content == expected.encode()
    assert response["Content-Type"] == "application/json; charset=utf-8"
    # The next page goes on from the cursor and ends the list.
    rest = staff_client.get(f"/api/images?limit=2&cursor={newest[-1].pk}{query}").json()
    assert [i["id"] for i in rest["items"]] == [Image.objects.order_by("id")[0].pk]
    assert rest["next_cursor"] is None


def test_album_page_tiles_are_the_thumbnail_partial(staff_client: Any) -> None:
    album = make_album(name="Odd names")
    images = [
        make_image(seed=10, original_filename='<b>"tile" & co</b>.png'),
        make_image(seed=11, is_nsfw=True),
        make_image(seed=12, visibility="private"),
    ]
    album_add_images(album=album, images=images)

    shown = tiles(staff_client.get(album.get_absolute_url()).text)

    expected = [
        tiles(render_to_string("albums/_thumb.html", {"image": image}))[0]
        for image in images
    ]
    assert shown == expected
    assert "&lt;b&gt;&quot;tile&quot; &amp; co&lt;/b&gt;.png" in shown[0]


def test_visitors_get_no_private_or_nsfw_tile(client: Any) -> None:
    album = make_album(name="Mixed")
    shown = make_image(seed=20)
    album_add_images(
        album=album,
        images=[shown, make_image(seed=21, is_nsfw=True), make_image(seed=22)],
    )
    html = client.get(album.get_absolute_url()).text
    assert len(tiles(html)) == 2
    assert "nsfw-blur" not in html


def test_the_home_page_counts_albums_only_when_they_fill_more_than_a_page(
    client: Any, monkeypatch: Any
) -> None:
    for n in range(3):
        make_album(name=f"Album {n}")
    monkeypatch.setattr(views, "GALLERY_PAGE_SIZE", 3)
    one_page = sql_of(lambda: client.get("/"))
    assert [s for s in one_page if "COUNT(" in s.upper()] == []
    # Albums, counts, covers and the covers' flags: one query in all.
    assert len(one_page) == 1

    monkeypatch.setattr(views, "GALLERY_PAGE_SIZE", 2)
    response = client.get("/")
    assert "Page 1 of 2" in response.text
    assert response.text.count('class="album-card"') == 2
    last = client.get("/?page=2")
    assert last.text.count('class="album-card"') == 1
    assert "Page 2 of 2" in last.text


@pytest.mark.parametrize("who", ["visitor", "staff"])
def test_later_pages_of_the_image_list_cost_what_the_first_costs(
    who: str, staff_user: Any
) -> None:
    caller = Client()
    if who == "staff":
        caller.force_login(staff_user)
    for n in range(7):
        make_image(seed=30 + n)
    first = caller.get("/api/images?limit=2").json()
    cursor = first["next_cursor"]
    assert len(sql_of(lambda: caller.get("/api/images?limit=2"))) == len(
        sql_of(lambda: caller.get(f"/api/images?limit=5&cursor={cursor}"))
    )


def test_the_album_page_costs_the_same_on_a_later_page(
    client: Any, monkeypatch: Any
) -> None:
    album = make_album(name="Long")
    album_add_images(album=album, images=[make_image(seed=40 + n) for n in range(7)])
    monkeypatch.setattr(views, "ALBUM_PAGE_SIZE", 2)
    first = sql_of(lambda: client.get(album.get_absolute_url()))
    later = sql_of(lambda: client.get(album.get_absolute_url() + "?page=3"))
    assert len(first) == len(later)
    # Tiles read four columns of a join, not whole image rows.
    tile_query = [s for s in first if '"albums_albumimage"' in s and "ORDER BY" in s]
    assert len(tile_query) == 1 and '"albums_image"."sha256"' not in tile_query[0]


def test_the_image_page_lookup_applies_the_visibility_rule(
    plain_user: Any, staff_user: Any
) -> None:
    from django.contrib.auth.models import AnonymousUser

    from albums import selectors

    public_album = make_album(name="Open")
    private_album = make_album(name="Closed", visibility="private")
    images = {
        "plain": make_image(seed=50),
        "nsfw": make_image(seed=51, is_nsfw=True),
        "private": make_image(seed=52, visibility="private"),
        "only in a private album": make_image(seed=53),
        "in both albums": make_image(seed=54),
    }
    album_add_images(album=private_album, images=[images["only in a private album"]])
    album_add_images(album=private_album, images=[images["in both albums"]])
    album_add_images(album=public_album, images=[images["in both albums"]])

    for user in (AnonymousUser(), plain_user, staff_user):
        for name, image in images.items():
            found = selectors.image_for_page(user=user, image_id=image.pk)
            rule = Image.objects.visible_to(user).filter(pk=image.pk).first()
            assert found == rule, (user, name)
            if found is not None:
                assert found.sha256 == image.sha256  # a whole row
    visitor = AnonymousUser()
    seen = {
        name
        for name, image in images.items()
        if selectors.image_for_page(user=visitor, image_id=image.pk)
    }
    assert seen == {"plain", "in both albums"}
    assert selectors.image_for_page(user=staff_user, image_id=10**9) is None


@pytest.mark.parametrize("page", ["1", "2"])
def test_gallery_covers_are_blurred_for_staff_on_every_page(
    staff_client: Any, monkeypatch: Any, page: str
) -> None:
    for n in range(2):
        album = make_album(name=f"Covers {n}")
        album_add_images(
            album=album, images=[make_image(seed=60 + n, is_nsfw=True), make_image()]
        )
    monkeypatch.setattr(views, "GALLERY_PAGE_SIZE", 1)
    html = staff_client.get("/", {"page": page}).text
    assert html.count('class="cover nsfw-blur"') == 1
    assert html.count('<div class="cover">') == 1


def test_the_image_page_names_only_the_albums_the_caller_may_see(
    staff_client: Any,
) -> None:
    visitor = Client()
    image = make_image(seed=70)
    album_add_images(album=make_album(name="Zebra open"), images=[image])
    album_add_images(
        album=make_album(name="Alpha closed", visibility="private"), images=[image]
    )
    seen = visitor.get(image.get_absolute_url()).text
    assert "Zebra open" in seen and "Alpha closed" not in seen
    staff_sees = staff_client.get(image.get_absolute_url()).text
    # By name, as before: Alpha first.
    assert staff_sees.index("Alpha closed") < staff_sees.index("Zebra open")
    assert visitor.get("/albums/alpha-closed/").status_code == 404
    assert staff_client.get("/albums/alpha-closed/").status_code == 200


def test_an_image_page_without_labels_recipe_or_import_costs_two_queries() -> None:
    # The parts' flags come with the image (albums.extensions annotations):
    # the image with its flags, and its albums; nothing per empty part.
    from labeling.models import Label

    image = make_image(seed=80)
    album_add_images(album=make_album(name="Plain"), images=[image])
    visitor = Client()
    page = sql_of(lambda: visitor.get(image.get_absolute_url()))
    assert len(page) == 2
    assert "No labels yet." in visitor.get(image.get_absolute_url()).text

    Label.objects.create(image=image, kind="caption", text="a quiet harbour")
    html = visitor.get(image.get_absolute_url()).text
    assert "a quiet harbour" in html and "No labels yet." not in html


def test_an_album_page_that_is_no_set_costs_two_queries() -> None:
    # The album with its parts' flags (not a set album), and its tiles.
    album = make_album(name="Plain album")
    album_add_images(album=album, images=[make_image(seed=90)])
    assert len(sql_of(lambda: Client().get(album.get_absolute_url()))) == 2
