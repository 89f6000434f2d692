"""/api/albums: list, detail, writes and the album's images."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.test.utils import CaptureQueriesContext

from albums.models import Album, AlbumImage, Image
from albums.services import album_add_images, album_remove_images, images_set
from albums.tests.builders import make_album, make_image

pytestmark = pytest.mark.django_db

CALLERS = ["anonymous", "user", "staff", "token"]
OPEN = {"anonymous": 200, "user": 200, "staff": 200, "token": 200}
STAFF_ONLY = {"anonymous": 404, "user": 404, "staff": 200, "token": 200}


def denied(ok: int) -> dict[str, int]:
    return {"anonymous": 401, "user": 403, "staff": ok, "token": ok}


def iso(value: Any) -> str:
    return DjangoJSONEncoder().default(value)


def thumb(image: Image) -> str:
    return f"/api/images/{image.pk}/thumbnail"


def album_json(album: Album, count: int, covers: list[Image]) -> dict[str, Any]:
    album.refresh_from_db()
    return {
        "id": album.pk,
        "name": album.name,
        "slug": album.slug,
        "description": album.description,
        "trigger_word": album.trigger_word,
        "source_kind": album.source_kind,
        "visibility": album.visibility,
        "created": iso(album.created),
        "updated": iso(album.updated),
        "image_count": count,
        "cover_thumbnail_urls": [thumb(im) for im in covers],
    }


def ids(body: dict[str, Any]) -> list[int]:
    return [item["id"] for item in body["items"]]


def send(client: Any, method: str, path: str, body: Any = None) -> Any:
    if body is None:
        return getattr(client, method)(path)
    return getattr(client, method)(
        path, data=json.dumps(body), content_type="application/json"
    )


# --- who may do what --------------------------------------------------------------

Body = Callable[[dict[str, Any]], Any] | None

ENDPOINTS: list[tuple[str, str, Body, dict[str, int]]] = [
    ("get", "/api/albums", None, OPEN),
    ("get", "/api/albums/{public}", None, OPEN),
    ("get", "/api/albums/tarot-deck", None, OPEN),
    ("get", "/api/albums/{private}", None, STAFF_ONLY),
    ("get", "/api/albums/drafts", None, STAFF_ONLY),
    ("get", "/api/albums/{public}/images", None, OPEN),
    ("get", "/api/albums/{private}/images", None, STAFF_ONLY),
    ("post", "/api/albums", lambda lib: {"name": "New"}, denied(201)),
    ("patch", "/api/albums/{public}", lambda lib: {"name": "Renamed"}, denied(200)),
    ("patch", "/api/albums/{private}", lambda lib: {"description": "x"}, denied(200)),
    ("delete", "/api/albums/{public}", None, denied(200)),
    ("delete", "/api/albums/{private}?keep_images=true", None, denied(200)),
    (
        "post",
        "/api/albums/{public}/images",
        lambda lib: {"image_ids": [lib["loose"].pk]},
        denied(200),
    ),
    (
        "delete",
        "/api/albums/{public}/images",
        lambda lib: {"image_ids": [lib["safe"].pk]},
        denied(200),
    ),
]


def snapshot() -> tuple[list[Any], list[Any]]:
    return (
        list(Album.objects.order_by("id").values()),
        list(AlbumImage.objects.order_by("id").values()),
    )


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path", "body", "expected"), ENDPOINTS)
def test_auth_matrix(
    call_as, library, caller: str, method: str, path: str, body: Body, expected
) -> None:
    before = snapshot()
    path = path.format(**{name: obj.pk for name, obj in library.items()})
    response = send(call_as(caller), method, path, body and body(library))
    assert response.status_code == expected[caller]
    if response.status_code >= 400:
        assert response.json()["error_code"] in {
            "unauthorized",
            "forbidden",
            "not_found",
        }
        assert snapshot() == before  # a refused write changed nothing


# --- list -------------------------------------------------------------------------


def test_anonymous_list_hides_private_albums_and_counts_only_visible_images(
    client, library
) -> None:
    response = client.get("/api/albums")
    assert response.json() == {
        "items": [album_json(library["public"], 1, [library["safe"]])],
        "next_cursor": None,
    }


def test_staff_list_shows_everything_newest_first(staff_client, library) -> None:
    everything = [library["safe"], library["nsfw"], library["hidden"]]
    assert staff_client.get("/api/albums").json() == {
        "items": [
            album_json(library["private"], 1, [library["draft"]]),
            album_json(library["public"], 3, everything),
        ],
        "next_cursor": None,
    }


def test_covers_are_the_first_four_visible_images_in_album_order(client) -> None:
    album = make_album()
    images = [make_image(album=album, seed=n) for n in range(7)]
    images_set(image_ids=[images[1].pk], is_nsfw=True)
    item = client.get("/api/albums").json()["items"][0]
    assert item["image_count"] == 6
    assert item["cover_thumbnail_urls"] == [thumb(images[n]) for n in (0, 2, 3, 4)]


def test_empty_album_has_no_covers(client) -> None:
    make_album()
    item = client.get("/api/albums").json()["items"][0]
    assert (item["image_count"], item["cover_thumbnail_urls"]) == (0, [])


def test_list_costs_the_same_queries_for_3_or_30_albums(client) -> None:
    def queries_for_page() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/api/albums?limit=50").status_code == 200
        return len(ctx.captured_queries)

    shared = [make_image(seed=n) for n in range(5)]
    for n in range(3):
        album_add_images(album=make_album(name=f"A{n}"), images=shared)
    small = queries_for_page()
    for n in range(27):
        album_add_images(album=make_album(name=f"B{n}"), images=shared)
    assert queries_for_page() == small == 1


def test_list_pages_by_cursor(client) -> None:
    albums = [make_album(name=f"Album {n}") for n in range(5)]
    first = client.get("/api/albums?limit=2").json()
    second = client.get(f"/api/albums?limit=2&cursor={first['next_cursor']}").json()
    third = client.get(f"/api/albums?limit=2&cursor={second['next_cursor']}").json()
    assert ids(first) + ids(second) + ids(third) == [a.pk for a in reversed(albums)]
    assert third["next_cursor"] is None


# --- detail and writes ------------------------------------------------------------


def test_detail_by_id_or_slug(client, library) -> None:
    expected = album_json(library["public"], 1, [library["safe"]])
    assert client.get(f"/api/albums/{library['public'].pk}").json() == expected
    assert client.get("/api/albums/tarot-deck").json() == expected


def test_a_numeric_slug_still_resolves_and_an_id_wins(client) -> None:
    first = make_album(name="First")
    year = make_album(name="2024")
    shadowed = make_album(name=str(first.pk))
    assert client.get("/api/albums/2024").json()["id"] == year.pk
    assert client.get(f"/api/albums/{first.pk}").json()["id"] == first.pk
    assert client.get(f"/api/albums/{shadowed.pk}").json()["id"] == shadowed.pk


@pytest.mark.parametrize("ref", ["nope", "999999", "99999999999999999999999"])
def test_unknown_album_is_404(client, ref: str) -> None:
    response = client.get(f"/api/albums/{ref}")
    assert response.status_code == 404
    assert response.json()["error"] == f"Album {ref} not found."


def test_create(staff_client, staff_user) -> None:
    response = staff_client.post(
        "/api/albums",
        data={
            "name": "  Major arcana ",
            "description": "The 22 trumps",
            "trigger_word": " arcn ",
            "visibility": "private",
            "source_kind": "scrape",
        },
        content_type="application/json",
    )
    album = Album.objects.get()
    assert response.status_code == 201
    assert response.json() == album_json(album, 0, [])
    assert (album.name, album.slug, album.visibility, album.source_kind) == (
        "Major arcana",
        "major-arcana",
        "private",
        "scrape",
    )
    assert album.created_by == staff_user
    assert album.trigger_word == "arcn"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "   "}, "name"),
        ({}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "A", "visibility": "secret"}, "visibility"),
        ({"name": "A", "source_kind": "magic"}, "source_kind"),
    ],
)
def test_create_rejects_bad_input(staff_client, body: dict[str, Any], field) -> None:
    response = send(staff_client, "post", "/api/albums", body)
    errors = response.json()["details"]["errors"]
    assert response.status_code == 422
    assert [e["loc"] for e in errors] == [["body", "payload", field]]
    assert Album.objects.count() == 0


def test_patch_changes_only_what_is_sent(staff_client, library) -> None:
    album = library["public"]
    response = send(
        staff_client, "patch", f"/api/albums/{album.pk}", {"visibility": "private"}
    )
    album.refresh_from_db()
    assert response.status_code == 200
    assert response.json() == album_json(album, 3, list(album.images.order_by("id")))
    assert (album.name, album.slug, album.visibility) == (
        "Tarot deck",
        "tarot-deck",
        "private",
    )
    send(staff_client, "patch", "/api/albums/tarot-deck", {"name": "Cards"})
    album.refresh_from_db()
    assert (album.name, album.slug, album.description) == (
        "Cards",
        "tarot-deck",  # links keep working after a rename
        "Major arcana",
    )


def test_delete_removes_images_no_other_album_holds(
    staff_client, library, django_capture_on_commit_callbacks
) -> None:
    album_add_images(album=library["private"], images=[library["safe"]])
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.delete(f"/api/albums/{library['public'].pk}")
    assert response.json() == {"images_deleted": 2, "images_kept": 1}
    assert set(Image.objects.values_list("pk", flat=True)) == {
        library[name].pk for name in ("safe", "draft", "loose")
    }


def test_delete_can_keep_every_image(staff_client, library) -> None:
    response = staff_client.delete("/api/albums/tarot-deck?keep_images=true")
    assert response.json() == {"images_deleted": 0, "images_kept": 3}
    assert Image.objects.count() == 5
    assert not Album.objects.filter(slug="tarot-deck").exists()


# --- the album's images -----------------------------------------------------------


def test_anonymous_sees_only_the_safe_public_images(client, library) -> None:
    body = client.get("/api/albums/tarot-deck/images").json()
    assert (ids(body), body["next_cursor"]) == ([library["safe"].pk], None)


def test_staff_sees_every_image_in_album_order(staff_client, library) -> None:
    album = library["public"]
    album_add_images(album=album, images=[library["loose"]])
    body = staff_client.get(f"/api/albums/{album.pk}/images").json()
    assert ids(body) == [library[n].pk for n in ("safe", "nsfw", "hidden", "loose")]


def test_item_shape(client, library) -> None:
    image = library["safe"]
    item = client.get("/api/albums/tarot-deck/images").json()["items"][0]
    assert item == {
        "id": image.pk,
        "width": 64,
        "height": 48,
        "format": "JPEG",
        "bytes": image.bytes,
        "is_animated": False,
        "original_filename": "img-1.jpeg",
        "source_kind": "upload",
        "source_url": "",
        "is_nsfw": False,
        "visibility": "public",
        "review_status": "unreviewed",
        "created": iso(image.created),
        "file_url": f"/api/images/{image.pk}/file",
        "thumbnail_url": f"/api/images/{image.pk}/thumbnail",
    }


def test_walking_120_images_is_stable_and_costs_the_same_per_page(client) -> None:
    album = make_album()
    images = [make_image(seed=n) for n in range(120)]
    album_add_images(album=album, images=images)
    seen: list[int] = []
    queries: list[int] = []
    cursor = ""
    for _ in range(3):
        with CaptureQueriesContext(connection) as ctx:
            body = client.get(f"/api/albums/{album.pk}/images?cursor={cursor}").json()
        queries.append(len(ctx.captured_queries))
        seen += ids(body)
        cursor = body["next_cursor"]
    assert cursor is None
    assert seen == [im.pk for im in images]  # album order, no repeats, none missed
    assert queries == [2, 2, 2]  # the album, then the page


def test_pages_do_not_shift_when_the_album_changes_mid_walk(client) -> None:
    album = make_album()
    images = [make_image(seed=n) for n in range(6)]
    album_add_images(album=album, images=images[:5])
    first = client.get(f"/api/albums/{album.pk}/images?limit=2").json()
    album_remove_images(album=album, image_ids=[images[0].pk])  # on page one
    album_add_images(album=album, images=[images[5]])  # appended at the end
    rest = client.get(
        f"/api/albums/{album.pk}/images?limit=50&cursor={first['next_cursor']}"
    ).json()
    assert ids(first) + ids(rest) == [im.pk for im in images]


def test_add_images_appends_and_skips_ones_already_there(staff_client, library) -> None:
    path = "/api/albums/tarot-deck/images"
    ids_ = [library["loose"].pk, library["safe"].pk, library["draft"].pk]
    assert send(staff_client, "post", path, {"image_ids": ids_}).json() == {"added": 2}
    body = staff_client.get(path).json()
    assert ids(body) == [
        library[n].pk for n in ("safe", "nsfw", "hidden", "loose", "draft")
    ]


def test_add_unknown_images_is_refused_whole(staff_client, library) -> None:
    body = {"image_ids": [library["loose"].pk, 424242, 434343]}
    response = send(staff_client, "post", "/api/albums/tarot-deck/images", body)
    assert response.status_code == 422
    assert response.json()["error_code"] == "unknown_images"
    assert response.json()["details"] == {"unknown_ids": [424242, 434343]}
    assert library["public"].images.count() == 3


def test_remove_images_by_body_or_query(staff_client, library) -> None:
    path = "/api/albums/tarot-deck/images"
    body = {"image_ids": [library["safe"].pk]}
    assert send(staff_client, "delete", path, body).json() == {"removed": 1}
    response = staff_client.delete(
        f"{path}?image_ids={library['nsfw'].pk}&image_ids={library['loose'].pk}"
    )
    assert response.json() == {"removed": 1}
    assert list(library["public"].images.all()) == [library["hidden"]]
    assert Image.objects.count() == 5  # out of the album, still in the library
    assert staff_client.delete(path).status_code == 422
