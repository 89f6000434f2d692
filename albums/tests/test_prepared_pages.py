"""On PostgreSQL the pages' hot queries are prepared statements: planned once
per connection, however many images and albums are asked for, with the same
pages as the ORM's own queries; `IMAGINEER_DB_PREPARED=0` turns them off."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client

from albums import selectors
from albums.services import album_add_images
from albums.tests.builders import make_album, make_image

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"
    ),
]


def prepared_statements() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, statement FROM pg_prepared_statements")
        return dict(cursor.fetchall())


def visit_pages(client: Client, images: list[Any], album: Any) -> list[str]:
    """The image pages, the album page and the home page (trace ids out)."""
    pages = []
    for path in [image.get_absolute_url() for image in images] + [
        album.get_absolute_url(),
        "/",
    ]:
        response = client.get(path)
        assert response.status_code == 200, path
        pages.append(re.sub(r"[0-9a-f]{32}", "(trace)", response.text))
    return pages


@pytest.fixture
def library() -> tuple[list[Any], Any]:
    album = make_album(name="Harbour")
    images = [make_image(seed=300 + n) for n in range(4)]
    album_add_images(album=album, images=images)
    return images, album


def test_the_pages_queries_are_prepared_once_whatever_is_asked(
    library: tuple[list[Any], Any],
) -> None:
    images, album = library
    client = Client()
    visit_pages(client, images[:1], album)
    first = prepared_statements()
    # The image (with its parts' flags), its albums, the album, its tiles and
    # the home page's albums.
    assert len(first) == 5, first
    assert any('FROM "albums_image"' in sql for sql in first.values())

    visit_pages(client, images[1:], album)
    assert prepared_statements() == first  # three more images: no new statement


def test_prepared_pages_show_what_the_orm_shows(
    library: tuple[list[Any], Any], settings: Any
) -> None:
    images, album = library
    hidden = make_image(seed=310, visibility="private")
    prepared = visit_pages(Client(), images, album)
    assert Client().get(hidden.get_absolute_url()).status_code == 404

    settings.DB_PREPARED = False
    connection.connection.execute("DEALLOCATE ALL")
    plain = visit_pages(Client(), images, album)
    assert prepared_statements() == {}
    assert Client().get(hidden.get_absolute_url()).status_code == 404
    assert prepared == plain


def test_a_rolled_back_transaction_does_not_lose_a_prepared_query(
    library: tuple[list[Any], Any], staff_user: Any
) -> None:
    images, _album = library
    image = images[0]
    assert selectors.image_for_page(user=staff_user, image_id=image.pk) == image

    with pytest.raises(RuntimeError), transaction.atomic():
        assert selectors.image_for_page(user=staff_user, image_id=image.pk) == image
        raise RuntimeError("rolled back")
    found = selectors.image_for_page(user=staff_user, image_id=image.pk)
    assert found == image and found.sha256 == image.sha256


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_lost_its_statements_falls_back_to_unprepared(
    monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    # A pooler in transaction mode hands the session a server connection
    # without the statement psycopg prepared: the page still answers, and the
    # process stops preparing, saying why once.
    from imagineer_project.lib import prepared

    monkeypatch.setattr(prepared, "_REFUSED", False)
    image = make_image(seed=320)
    client = Client()
    first = client.get(image.get_absolute_url())
    assert first.status_code == 200 and prepared_statements()
    # Behind psycopg's back, as another server connection would be.
    connection.connection.pgconn.exec_(b"DEALLOCATE ALL")

    again = client.get(image.get_absolute_url())

    assert again.status_code == 200
    assert re.sub(r"[0-9a-f]{32}", "", again.text) == re.sub(
        r"[0-9a-f]{32}", "", first.text
    )
    assert prepared._REFUSED
    warned = [r for r in caplog.records if "does not keep prepared" in r.getMessage()]
    assert len(warned) == 1
    assert client.get(image.get_absolute_url()).status_code == 200
    assert prepared_statements() == {}  # nothing prepared since
