"""/api/images: list and filters, detail, triage writes, files and thumbnails."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from PIL import Image as PILImage

from albums.models import Image
from albums.services import album_add_images, thumbnail_key
from albums.tests.builders import make_album, make_image
from labeling.models import Label

pytestmark = pytest.mark.django_db

CALLERS = ["anonymous", "user", "staff", "token"]
OPEN = {"anonymous": 200, "user": 200, "staff": 200, "token": 200}
STAFF_ONLY = {"anonymous": 404, "user": 404, "staff": 200, "token": 200}
WRITE = {"anonymous": 401, "user": 403, "staff": 200, "token": 200}


def iso(value: Any) -> str:
    return DjangoJSONEncoder().default(value)


def ids(body: dict[str, Any]) -> list[int]:
    return [item["id"] for item in body["items"]]


def patch(client: Any, path: str, body: dict[str, Any]) -> Any:
    return client.patch(path, data=json.dumps(body), content_type="application/json")


# --- who may do what --------------------------------------------------------------

ENDPOINTS = [
    ("get", "/api/images", None, OPEN),
    ("get", "/api/images/{safe}", None, OPEN),
    ("get", "/api/images/{nsfw}", None, STAFF_ONLY),
    ("get", "/api/images/{hidden}", None, STAFF_ONLY),
    ("get", "/api/images/{safe}/file", None, OPEN),
    ("get", "/api/images/{nsfw}/file", None, STAFF_ONLY),
    ("get", "/api/images/{hidden}/file", None, STAFF_ONLY),
    ("get", "/api/images/{safe}/thumbnail", None, OPEN),
    ("get", "/api/images/{nsfw}/thumbnail?size=512", None, STAFF_ONLY),
    ("get", "/api/images/{hidden}/thumbnail", None, STAFF_ONLY),
    ("patch", "/api/images/{safe}", {"is_nsfw": True}, WRITE),
    ("patch", "/api/images/{hidden}", {"visibility": "public"}, WRITE),
    ("delete", "/api/images/{safe}", None, {**WRITE, "staff": 204, "token": 204}),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path", "body", "expected"), ENDPOINTS)
def test_auth_matrix(
    call_as, library, caller: str, method: str, path: str, body, expected
) -> None:
    before = list(Image.objects.order_by("id").values())
    client = call_as(caller)
    path = path.format(**{name: obj.pk for name, obj in library.items()})
    if body is None:
        response = getattr(client, method)(path)
    else:
        response = patch(client, path, body)
    assert response.status_code == expected[caller]
    if response.status_code >= 400:
        assert response.json()["error_code"] in {
            "unauthorized",
            "forbidden",
            "not_found",
        }
        assert list(Image.objects.order_by("id").values()) == before


@pytest.mark.parametrize("caller", CALLERS)
def test_an_unknown_image_is_404_to_everyone(call_as, caller: str) -> None:
    for path in [
        "/api/images/4242",
        "/api/images/4242/file",
        "/api/images/4242/thumbnail",
    ]:
        response = call_as(caller).get(path)
        assert response.status_code == 404
        assert response.json()["error_code"] == "not_found"


# --- list and filters -------------------------------------------------------------


def test_anonymous_list_hides_nsfw_and_private_images(client, library) -> None:
    # `draft` is a public image held only by a private album: hidden too.
    body = client.get("/api/images").json()
    assert (ids(body), body["next_cursor"]) == (
        [library[n].pk for n in ("loose", "safe")],
        None,
    )


def test_staff_list_is_everything_newest_first(staff_client, library) -> None:
    body = staff_client.get("/api/images").json()
    assert ids(body) == sorted(
        (im.pk for im in library.values() if isinstance(im, Image)), reverse=True
    )


def test_list_walks_by_cursor(client) -> None:
    images = [make_image(seed=n) for n in range(7)]
    seen, cursor = [], ""
    while cursor is not None:
        body = client.get(f"/api/images?limit=3&cursor={cursor}").json()
        seen += ids(body)
        cursor = body["next_cursor"]
    assert seen == [im.pk for im in reversed(images)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("album=tarot-deck", ["hidden", "nsfw", "safe"]),
        ("album={public}", ["hidden", "nsfw", "safe"]),
        ("nsfw=true", ["nsfw"]),
        ("nsfw=false", ["loose", "draft", "hidden", "safe"]),
        ("review_status=approved", ["draft"]),
        ("source_kind=scrape", ["loose"]),
        ("q=img-3", ["hidden"]),
        ("q=example.org/cards", ["loose"]),
        ("q=HIGH+PRIESTESS", ["safe"]),
        ("album=drafts&review_status=approved", ["draft"]),
        ("nsfw=false&q=priestess", ["safe"]),
    ],
)
def test_staff_filters(staff_client, library, query: str, expected: list[str]) -> None:
    Image.objects.filter(pk=library["draft"].pk).update(review_status="approved")
    Image.objects.filter(pk=library["loose"].pk).update(
        source_kind="scrape", source_url="https://example.org/cards/7.jpg"
    )
    # Two matching labels on one image must still list it once.
    for text in ("The High Priestess", "high priestess, seated"):
        Label.objects.create(image=library["safe"], kind="caption", text=text)
    query = query.format(public=library["public"].pk)
    body = staff_client.get(f"/api/images?{query}").json()
    assert ids(body) == [library[n].pk for n in expected]


def test_anonymous_never_gets_nsfw_even_when_asking(client, library) -> None:
    assert client.get("/api/images?nsfw=true").json() == {
        "items": [],
        "next_cursor": None,
    }


def test_filtering_by_a_private_album_is_404_to_anonymous(client, library) -> None:
    assert client.get("/api/images?album=drafts").status_code == 404


@pytest.mark.parametrize(
    "query", ["review_status=maybe", "source_kind=ftp", "nsfw=perhaps", "limit=201"]
)
def test_bad_filters_are_422(client, query: str) -> None:
    response = client.get(f"/api/images?{query}")
    assert response.status_code == 422
    assert response.json()["error_code"] == "validation_error"


# --- detail -----------------------------------------------------------------------


def test_detail_has_labels_provenance_and_visible_albums(client, library) -> None:
    image = library["safe"]
    fetched = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    Image.objects.filter(pk=image.pk).update(
        source_url="https://example.org/img/1.jpg",
        page_url="https://example.org/gallery",
        fetched_at=fetched,
        source_headers={"content-type": "image/jpeg"},
    )
    album_add_images(album=library["private"], images=[image])
    tag = Label.objects.create(image=image, kind="tag", text="tarot", source="html")
    caption = Label.objects.create(
        image=image,
        kind="caption",
        text="A seated figure",
        source="claude",
        model_name="claude-sonnet",
        prompt_version="v2",
        confidence=0.9,
    )
    image.refresh_from_db()
    response = client.get(f"/api/images/{image.pk}")
    assert response.json() == {
        "id": image.pk,
        "width": 64,
        "height": 48,
        "format": "JPEG",
        "bytes": image.bytes,
        "is_animated": False,
        "original_filename": "img-1.jpeg",
        "source_kind": "upload",
        "source_url": "https://example.org/img/1.jpg",
        "is_nsfw": False,
        "visibility": "public",
        "review_status": "unreviewed",
        "created": iso(image.created),
        "file_url": f"/api/images/{image.pk}/file",
        "thumbnail_url": f"/api/images/{image.pk}/thumbnail",
        "sha256": image.sha256,
        "page_url": "https://example.org/gallery",
        "fetched_at": "2025-03-01T12:00:00Z",
        "source_headers": {"content-type": "image/jpeg"},
        "updated": iso(image.updated),
        "labels": [
            {
                "id": caption.pk,
                "kind": "caption",
                "text": "A seated figure",
                "source": "claude",
                "model_name": "claude-sonnet",
                "prompt_version": "v2",
                "confidence": 0.9,
                "created": iso(caption.created),
            },
            {
                "id": tag.pk,
                "kind": "tag",
                "text": "tarot",
                "source": "html",
                "model_name": "",
                "prompt_version": "",
                "confidence": None,
                "created": iso(tag.created),
            },
        ],
        # The private "Drafts" album also holds it, but is not shown to visitors.
        "albums": [
            {"id": library["public"].pk, "slug": "tarot-deck", "name": "Tarot deck"}
        ],
        "recipe": None,  # only generated images have one
        "provenance": None,  # only imported ones this
    }


def test_staff_detail_lists_every_album(staff_client, library) -> None:
    album_add_images(album=library["private"], images=[library["safe"]])
    body = staff_client.get(f"/api/images/{library['safe'].pk}").json()
    assert [a["slug"] for a in body["albums"]] == ["tarot-deck", "drafts"]


# --- writes -----------------------------------------------------------------------


def test_patch_sets_triage_fields(staff_client, library) -> None:
    image = library["safe"]
    response = patch(
        staff_client,
        f"/api/images/{image.pk}",
        {"is_nsfw": True, "review_status": "rejected"},
    )
    image.refresh_from_db()
    assert response.status_code == 200
    body = response.json()
    assert (body["is_nsfw"], body["review_status"], body["visibility"]) == (
        True,
        "rejected",
        "public",
    )
    assert (image.is_nsfw, image.review_status) == (True, "rejected")
    assert body["updated"] == iso(image.updated)


@pytest.mark.parametrize(
    "body", [{"visibility": "everyone"}, {"review_status": "meh"}, {"is_nsfw": "very"}]
)
def test_patch_rejects_bad_values(staff_client, library, body) -> None:
    response = patch(staff_client, f"/api/images/{library['safe'].pk}", body)
    assert response.status_code == 422


def test_delete_removes_the_row_and_its_files(
    staff_client, library, settings, django_capture_on_commit_callbacks
) -> None:
    image = library["safe"]
    stored = Path(settings.MEDIA_ROOT, image.file.name)
    assert stored.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.delete(f"/api/images/{image.pk}")
    assert (response.status_code, response.content) == (204, b"")
    assert not Image.objects.filter(pk=image.pk).exists()
    assert not stored.exists()
    assert library["public"].images.count() == 2


# --- files and thumbnails ---------------------------------------------------------


def test_file_is_the_stored_original_with_safe_headers(
    client, library, settings
) -> None:
    image = library["safe"]
    response = client.get(f"/api/images/{image.pk}/file")
    assert response.status_code == 200
    assert (
        b"".join(response.streaming_content)
        == Path(settings.MEDIA_ROOT, image.file.name).read_bytes()
    )
    assert response["Content-Type"] == "image/jpeg"
    assert response["Content-Disposition"] == 'inline; filename="img-1.jpeg"'
    assert response["ETag"] == f'"{image.sha256}"'
    assert response["Cache-Control"] == "public, max-age=0, must-revalidate"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_staff_only_files_are_never_publicly_cacheable(staff_client, library) -> None:
    for name in ("nsfw", "hidden"):
        response = staff_client.get(f"/api/images/{library[name].pk}/file")
        assert response["Cache-Control"] == "private, max-age=0, must-revalidate"
        thumb = staff_client.get(f"/api/images/{library[name].pk}/thumbnail")
        assert thumb["Cache-Control"] == "private, max-age=0, must-revalidate"


@pytest.mark.parametrize(
    ("stored_name", "header"),
    [
        ('quote"d.jpg', 'inline; filename="quote\\"d.jpg"'),
        ("no-extension", 'inline; filename="no-extension.jpg"'),
        ("wrong.png", 'inline; filename="wrong.png.jpg"'),
        ("café.jpeg", "inline; filename*=utf-8''caf%C3%A9.jpeg"),
        ("", None),
    ],
)
def test_download_name(client, stored_name: str, header: str | None) -> None:
    image = make_image(seed=9, original_filename=stored_name)
    response = client.get(f"/api/images/{image.pk}/file")
    expected = header or f'inline; filename="{image.sha256[:16]}.jpg"'
    assert response["Content-Disposition"] == expected


def test_a_matching_etag_answers_304_without_the_body(client, library) -> None:
    image = library["safe"]
    response = client.get(
        f"/api/images/{image.pk}/file", HTTP_IF_NONE_MATCH=f'"{image.sha256}"'
    )
    assert (response.status_code, response.content) == (304, b"")
    assert response["ETag"] == f'"{image.sha256}"'
    listed = client.get(
        f"/api/images/{image.pk}/file", HTTP_IF_NONE_MATCH=f'"stale", "{image.sha256}"'
    )
    assert listed.status_code == 304
    stale = client.get(f"/api/images/{image.pk}/file", HTTP_IF_NONE_MATCH='"stale"')
    assert stale.status_code == 200
    hidden = library["hidden"]
    response = client.get(
        f"/api/images/{hidden.pk}/file", HTTP_IF_NONE_MATCH=f'"{hidden.sha256}"'
    )
    assert response.status_code == 404  # visibility is checked first


@pytest.mark.parametrize(
    ("query", "size"), [("", 256), ("?size=256", 256), ("?size=512", 512)]
)
def test_thumbnail_sizes(client, settings, query: str, size: int) -> None:
    image = make_image(seed=10, size=(1200, 900))
    response = client.get(f"/api/images/{image.pk}/thumbnail{query}")
    body = b"".join(response.streaming_content)
    assert response["Content-Type"] == "image/webp"
    assert response["ETag"] == f'"{image.sha256}-{size}"'
    assert (
        body
        == Path(settings.MEDIA_ROOT, thumbnail_key(image.sha256, size)).read_bytes()
    )
    with PILImage.open(
        Path(settings.MEDIA_ROOT, thumbnail_key(image.sha256, size))
    ) as im:
        assert max(im.size) == size


@pytest.mark.parametrize("size", ["300", "0", "abc", "-256"])
def test_other_thumbnail_sizes_are_422(client, library, size: str) -> None:
    response = client.get(f"/api/images/{library['safe'].pk}/thumbnail?size={size}")
    assert response.status_code == 422
    assert response.json()["error_code"] in {"invalid_size", "validation_error"}


def test_a_file_missing_from_storage_is_a_clean_404(client, library, settings) -> None:
    image = library["safe"]
    Path(settings.MEDIA_ROOT, image.file.name).unlink()
    response = client.get(f"/api/images/{image.pk}/file")
    assert response.status_code == 404
    assert response.json()["error_code"] == "file_missing"
    assert str(settings.MEDIA_ROOT) not in response.content.decode()


def test_album_membership_does_not_grant_visibility(client) -> None:
    album = make_album(name="Open album")
    secret = make_image(album=album, seed=11, visibility="private")
    assert client.get(f"/api/images/{secret.pk}").status_code == 404
    assert client.get("/api/albums/open-album/images").json()["items"] == []
