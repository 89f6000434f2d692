from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from albums import views
from albums.services import album_add_images
from albums.tests.builders import make_album, make_image
from labeling.models import Label

pytestmark = pytest.mark.django_db


def shown_ids(html: str) -> list[int]:
    """Ids of the image tiles on a page, in page order."""
    return [
        int(i)
        for i in re.findall(
            r'class="tile[^"]*" href="[^"]*" '
            r'data-image-id="(\d+)"',
            html,
        )
    ]


def nsfw_tiles(html: str) -> list[int]:
    return [
        int(i)
        for i in re.findall(
            r'class="tile nsfw-blur" href="[^"]*" '
            r'data-image-id="(\d+)"',
            html,
        )
    ]


# --- anonymous and non-staff visitors ---------------------------------------------


def test_anonymous_gallery_lists_public_albums_with_visible_counts(
    client: Any, library: dict[str, Any]
) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert [a.slug for a in response.context["page"].object_list] == ["tarot-deck"]
    assert "Drafts" not in response.text
    assert "1 image\n" in response.text  # the NSFW and private ones are not counted
    assert f"/api/images/{library['safe'].pk}/thumbnail?size=256" in response.text
    assert f"/api/images/{library['nsfw'].pk}/" not in response.text


def test_anonymous_album_page_shows_only_public_safe_images(
    client: Any, library: dict[str, Any]
) -> None:
    response = client.get("/albums/tarot-deck/")

    assert response.status_code == 200
    assert shown_ids(response.text) == [library["safe"].pk]
    assert f"/api/images/{library['nsfw'].pk}/" not in response.text
    assert f"/api/images/{library['hidden'].pk}/" not in response.text
    assert "nsfw-toggle" not in response.text


@pytest.mark.parametrize("name", ["nsfw", "hidden"])
def test_anonymous_gets_404_for_nsfw_and_private_images(
    client: Any, library: dict[str, Any], name: str
) -> None:
    assert client.get(f"/images/{library[name].pk}/").status_code == 404


def test_private_album_is_404_for_anonymous_and_non_staff(
    user_client: Any, library: dict[str, Any]
) -> None:
    assert Client().get("/albums/drafts/").status_code == 404
    assert user_client.get("/albums/drafts/").status_code == 404
    assert user_client.get(f"/images/{library['nsfw'].pk}/").status_code == 404


def test_signed_in_non_staff_sees_what_anonymous_sees(
    user_client: Any, library: dict[str, Any]
) -> None:
    response = user_client.get("/albums/tarot-deck/")

    assert shown_ids(response.text) == [library["safe"].pk]
    assert "Admin" not in response.text


# --- staff ------------------------------------------------------------------------


def test_staff_see_everything_with_nsfw_blurred(
    staff_client: Any, library: dict[str, Any]
) -> None:
    response = staff_client.get("/albums/tarot-deck/")

    assert shown_ids(response.text) == [
        library["safe"].pk,
        library["nsfw"].pk,
        library["hidden"].pk,
    ]
    assert nsfw_tiles(response.text) == [library["nsfw"].pk]
    assert 'id="nsfw-toggle"' in response.text
    assert staff_client.get("/albums/drafts/").status_code == 200


def test_staff_image_page_blurs_an_nsfw_image(
    staff_client: Any, library: dict[str, Any]
) -> None:
    response = staff_client.get(f"/images/{library['nsfw'].pk}/")

    assert response.status_code == 200
    assert 'class="preview nsfw-blur"' in response.text


def test_staff_gallery_shows_private_albums_and_blurred_covers(
    staff_client: Any, library: dict[str, Any]
) -> None:
    response = staff_client.get("/")

    slugs = [a.slug for a in response.context["page"].object_list]
    assert slugs == ["drafts", "tarot-deck"]  # newest first
    assert 'class="cover nsfw-blur"' in response.text
    assert "3 images" in response.text


# --- pages ------------------------------------------------------------------------


def test_album_page_paginates_in_album_order(client: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(views, "ALBUM_PAGE_SIZE", 2)
    album = make_album(name="Deck")
    images = [make_image(seed=s) for s in range(5)]
    album_add_images(album=album, images=list(reversed(images)))
    in_order = [im.pk for im in reversed(images)]

    pages = [client.get("/albums/deck/", {"page": n}) for n in (1, 2, 3)]

    assert [shown_ids(p.text) for p in pages] == [
        in_order[:2],
        in_order[2:4],
        in_order[4:],
    ]
    assert 'href="?page=2" rel="next"' in pages[0].text
    assert "Page 3 of 3" in pages[2].text


def test_gallery_queries_do_not_grow_with_albums(client: Any) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/").status_code == 200
        return len(ctx)

    for n in range(2):
        album = make_album(name=f"Album {n}")
        make_image(album=album, seed=n)
    few = queries()
    for n in range(2, 8):
        album = make_album(name=f"Album {n}")
        for k in range(5):
            make_image(album=album, seed=n * 10 + k)

    assert queries() == few
    response = client.get("/")
    covers = response.text.count('<div class="cover">')
    assert covers == 2 + 6 * views.COVERS_PER_ALBUM


def test_image_page_shows_labels_by_kind_and_provenance(
    client: Any, library: dict[str, Any]
) -> None:
    image = make_image(
        album=library["public"],
        seed=9,
        source_url="https://cards.example/img/tower.jpg",
        page_url="https://cards.example/tower",
        fetched_at=datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
    )
    Label.objects.create(image=image, kind="tag", text="tower")
    Label.objects.create(
        image=image, kind="caption", text="A tower struck by lightning"
    )
    Label.objects.create(image=image, kind="tag", text="lightning")

    response = client.get(f"/images/{image.pk}/")

    assert response.status_code == 200
    assert [
        (kind, [lb.text for lb in labels])
        for kind, labels in response.context["label_groups"]
    ] == [
        ("Caption", ["A tower struck by lightning"]),
        ("Tag", ["tower", "lightning"]),
    ]
    for text in (
        "https://cards.example/img/tower.jpg",
        "https://cards.example/tower",
        "2026-03-01 12:30",
        "64×48 px",
        "JPEG",
        "Tarot deck",
    ):
        assert text in response.text
    assert f'src="/api/images/{image.pk}/thumbnail?size=512"' in response.text
    assert f'href="/api/images/{image.pk}/file"' in response.text


def test_header_offers_login_to_anonymous_and_a_logout_form_to_users(
    staff_client: Any,
) -> None:
    anonymous = Client().get("/")
    assert 'href="/accounts/login/?next=/"' in anonymous.text

    staff = staff_client.get("/")
    assert re.search(r'<form method="post" action="/accounts/logout/"', staff.text)
    assert 'href="/admin/"' in staff.text


def test_login_page_signs_in(client: Any, plain_user: Any) -> None:
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert 'name="password"' in page.text

    response = client.post(
        "/accounts/login/",
        {"username": "viewer", "password": "pw-for-tests-only", "next": "/"},
    )

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_logout_is_a_post(staff_client: Any) -> None:
    response = staff_client.post("/accounts/logout/", {"next": "/"})

    assert response.status_code == 302
    assert "nsfw-toggle" not in staff_client.get("/").text
