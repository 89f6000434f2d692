"""Writes that race: many uploads to one new album name, many adds to one
album. Real threads against a real PostgreSQL (SQLite's in-memory test
database locks whole tables between threads, so these run in the PostgreSQL
pass of CI and `make test` with DATABASE_URL set)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client

from albums.models import Album, AlbumImage
from albums.services import album_add_images
from albums.tests.builders import make_album, make_image
from imagineer_project.testing import make_image_bytes

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"
    ),
]
THREADS = 20


def in_threads(work: Any) -> list[Any]:
    """Run work(i) in THREADS threads that start together; their results."""
    start = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except Exception as exc:  # the assertion below shows it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_uploads_to_one_new_album_name_make_one_album(
    staff_token: str,
) -> None:
    def upload(i: int) -> int:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {staff_token}")
        image = SimpleUploadedFile(f"{i}.png", make_image_bytes("PNG", seed=i))
        response = client.post(
            "/api/images/upload", {"files": [image], "album_name": "Race day"}
        )
        return response.status_code

    assert in_threads(upload) == [201] * THREADS
    album = Album.objects.get(name="Race day")  # one, or this raises
    positions = sorted(album.memberships.values_list("position", flat=True))
    assert positions == list(range(1, THREADS + 1))


def test_concurrent_adds_to_one_album_never_repeat_a_position() -> None:
    album = make_album(name="Deck")
    images = [make_image(seed=100 + i) for i in range(THREADS)]

    def add(i: int) -> int:
        return album_add_images(album=album, images=[images[i]])

    assert in_threads(add) == [1] * THREADS
    positions = AlbumImage.objects.filter(album=album).values_list(
        "position", flat=True
    )
    assert sorted(positions) == list(range(1, THREADS + 1))
