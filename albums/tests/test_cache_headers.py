"""Files and thumbnails carry a strong ETag (the content hash, with the
thumbnail's size) and revalidate (their URLs are by id, and who may see an
image can change), so a second view answers 304 with no body; a shared cache
may keep only what a visitor may see; on S3 the API redirects to a signed URL
instead of streaming the bytes through Django."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from albums.api import SIGNED_URL_SECONDS
from albums.models import Visibility
from albums.services import album_create, image_ingest, images_set
from albums.tests.builders import make_album, make_image
from imagineer_project.testing import make_image_bytes

pytestmark = pytest.mark.django_db


def test_a_second_view_of_a_thumbnail_transfers_nothing(client) -> None:
    image = make_image(album=make_album())
    url = f"/api/images/{image.pk}/thumbnail?size=256"
    first = client.get(url)
    assert first.status_code == 200
    assert first["ETag"] == f'"{image.sha256}-256"'
    assert first["Cache-Control"] == "public, max-age=0, must-revalidate"
    again = client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert (again.status_code, again.content) == (304, b"")
    assert (again["ETag"], again["Cache-Control"]) == (
        first["ETag"],
        first["Cache-Control"],
    )
    other_size = client.get(
        f"/api/images/{image.pk}/thumbnail?size=512", HTTP_IF_NONE_MATCH=first["ETag"]
    )
    assert other_size.status_code == 200


def test_an_image_turned_nsfw_stops_answering_304_to_visitors(staff_client) -> None:
    client = Client()  # a visitor, beside the staff one
    image = make_image(album=make_album())
    etag = f'"{image.sha256}"'
    assert client.get(f"/api/images/{image.pk}/file").status_code == 200
    images_set(image_ids=[image.pk], is_nsfw=True)
    revalidated = client.get(f"/api/images/{image.pk}/file", HTTP_IF_NONE_MATCH=etag)
    assert revalidated.status_code == 404
    staff = staff_client.get(f"/api/images/{image.pk}/file", HTTP_IF_NONE_MATCH=etag)
    assert (staff.status_code, staff["Cache-Control"]) == (
        304,
        "private, max-age=0, must-revalidate",
    )


def test_staff_see_private_caching_for_an_image_held_only_by_private_albums(
    staff_client,
) -> None:
    image = make_image(album=make_album(visibility=Visibility.PRIVATE))
    response = staff_client.get(f"/api/images/{image.pk}/thumbnail")
    assert response["Cache-Control"] == "private, max-age=0, must-revalidate"
    shown = make_image(album=make_album(name="Open"), seed=3)
    response = staff_client.get(f"/api/images/{shown.pk}/thumbnail")
    assert response["Cache-Control"] == "public, max-age=0, must-revalidate"


def test_on_s3_files_redirect_to_a_signed_url_that_expires(s3_bucket, client) -> None:
    album = album_create(name="Bucket")
    image = image_ingest(
        data=make_image_bytes(seed=4, size=(300, 200)),
        filename="card.jpg",
        source_kind="upload",
        album=album,
    ).image
    response = client.get(f"/api/images/{image.pk}/file")
    assert response.status_code == 302
    assert response["Cache-Control"] == f"private, max-age={SIGNED_URL_SECONDS // 2}"
    assert response["ETag"] == f'"{image.sha256}"'
    location = urlsplit(response["Location"])
    query = parse_qs(location.query)
    assert location.path.endswith(image.file.name)
    assert "Signature" in query
    # Signature version 2: an absolute expiry, SIGNED_URL_SECONDS from now.
    assert 0 < int(query["Expires"][0]) - time.time() <= SIGNED_URL_SECONDS
    assert query["response-content-type"] == ["image/jpeg"]
    assert query["response-content-disposition"] == ['inline; filename="card.jpg"']
    thumb = client.get(f"/api/images/{image.pk}/thumbnail?size=256")
    assert thumb.status_code == 302
    assert urlsplit(thumb["Location"]).path.endswith(f"{image.sha256}.webp")
    held = client.get(
        f"/api/images/{image.pk}/file", HTTP_IF_NONE_MATCH=f'"{image.sha256}"'
    )
    assert held.status_code == 304


def test_on_s3_the_signed_url_serves_the_bytes(s3_bucket, client) -> None:
    import requests

    data = make_image_bytes(seed=5, size=(120, 90))
    image = image_ingest(
        data=data, filename="x.jpg", source_kind="upload", album=make_album()
    ).image
    location = client.get(f"/api/images/{image.pk}/file")["Location"]
    # moto answers the signed request in process (requests is patched by it).
    fetched = requests.get(location, timeout=10)
    assert fetched.status_code == 200
    assert (
        fetched.content
        == s3_bucket.get_object(Bucket="media", Key=image.file.name)["Body"].read()
    )
