"""Who sees an image: a visitor (anonymous, or signed in without staff status)
sees it only if it is public, not NSFW, and not held exclusively by private
albums. Every door an image reaches a visitor through follows that one rule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from albums.services import album_add_images
from albums.tests.builders import make_album, make_image
from labeling.models import Label

pytestmark = pytest.mark.django_db

VISITORS = ["anonymous", "user"]

# Every place an image's bytes, metadata or labels reach a caller.
IMAGE_DOORS = [
    "/api/images/{id}",
    "/api/images/{id}/file",
    "/api/images/{id}/thumbnail",
    "/api/images/{id}/thumbnail?size=512",
    "/api/images/{id}/labels",
    "/images/{id}/",
]


def listed(client: Any, query: str = "") -> list[int]:
    body = client.get(f"/api/images?limit=100{query}").json()
    return [item["id"] for item in body["items"]]


def served(client: Any, image_id: int) -> list[str]:
    """The doors that answered 200 for this image."""
    return [
        door
        for door in IMAGE_DOORS
        if client.get(door.format(id=image_id)).status_code == 200
    ]


@pytest.fixture
def held() -> dict[str, Any]:
    """`secret` is held only by private albums, `shared` by a private and a
    public one, `loose` by none; all three are public, safe images captioned
    "moon"."""
    public = make_album(name="Open")
    drafts = make_album(name="Drafts", visibility="private")
    vault = make_album(name="Vault", visibility="private")
    secret = make_image(album=drafts, seed=11)
    album_add_images(album=vault, images=[secret])
    shared = make_image(album=drafts, seed=12)
    album_add_images(album=public, images=[shared])
    loose = make_image(seed=13)
    for image in (secret, shared, loose):
        Label.objects.create(image=image, kind="caption", text="moon over water")
    return {"public": public, "secret": secret, "shared": shared, "loose": loose}


@pytest.mark.parametrize("caller", VISITORS)
def test_an_image_held_only_by_private_albums_reaches_no_visitor(
    call_as, held, caller: str
) -> None:
    client = call_as(caller)
    secret = held["secret"].pk
    assert served(client, secret) == []
    assert secret not in listed(client)
    assert secret not in listed(client, "&q=moon")
    assert secret not in listed(client, f"&q={held['secret'].original_filename}")


@pytest.mark.parametrize("caller", VISITORS)
def test_a_public_album_or_no_album_keeps_an_image_visible(
    call_as, held, caller: str
) -> None:
    client = call_as(caller)
    for name in ("shared", "loose"):
        assert served(client, held[name].pk) == IMAGE_DOORS
    assert listed(client, "&q=moon") == [held["loose"].pk, held["shared"].pk]
    body = client.get(f"/api/albums/{held['public'].slug}/images").json()
    assert [item["id"] for item in body["items"]] == [held["shared"].pk]


@pytest.mark.parametrize("caller", ["staff", "token"])
def test_staff_still_see_every_image(call_as, held, caller: str) -> None:
    client = call_as(caller)
    api_doors = [door for door in IMAGE_DOORS if door.startswith("/api/")]
    assert served(client, held["secret"].pk)[: len(api_doors)] == api_doors
    assert held["secret"].pk in listed(client, "&q=moon")


def test_making_an_album_private_hides_its_images(call_as, staff_client) -> None:
    album = make_album(name="Sketches")
    image = make_image(album=album, seed=21)
    visitor = call_as("anonymous")
    assert served(visitor, image.pk) == IMAGE_DOORS
    response = staff_client.patch(
        f"/api/albums/{album.slug}",
        data=json.dumps({"visibility": "private"}),
        content_type="application/json",
    )
    assert response.status_code == 200
    assert served(visitor, image.pk) == []
    assert image.pk not in listed(visitor)
    # Adding it to a public album shows it again.
    album_add_images(album=make_album(name="Finished"), images=[image])
    assert served(visitor, image.pk) == IMAGE_DOORS


def test_the_gallery_and_album_pages_count_and_cover_only_what_visitors_see(
    client, held
) -> None:
    page = client.get(f"/albums/{held['public'].slug}/").content.decode()
    assert f'data-image-id="{held["shared"].pk}"' in page
    gallery = client.get("/").content.decode()
    assert f"/api/images/{held['secret'].pk}/thumbnail" not in gallery
    assert f"/api/images/{held['shared'].pk}/thumbnail" in gallery
