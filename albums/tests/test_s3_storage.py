"""The same ingest path on django-storages' S3 backend (moto stands in for S3)."""

from __future__ import annotations

import pytest

from albums.services import image_ingest, image_thumbnail_key, thumbnail_key
from albums.tests.builders import make_album
from imagineer_project.testing import make_image_bytes

pytestmark = pytest.mark.django_db


def bucket_keys(client) -> set[str]:
    listing = client.list_objects_v2(Bucket="media")
    return {obj["Key"] for obj in listing.get("Contents", [])}


def test_ingest_and_thumbnails_go_to_the_bucket(s3_bucket) -> None:
    result = image_ingest(
        data=make_image_bytes(seed=1, size=(900, 700)),
        filename="a.jpg",
        source_kind="upload",
        album=make_album(),
    )
    image = result.image
    assert bucket_keys(s3_bucket) == {image.file.name, thumbnail_key(image.sha256, 256)}
    image_thumbnail_key(image, 512)
    assert thumbnail_key(image.sha256, 512) in bucket_keys(s3_bucket)
