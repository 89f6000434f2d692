"""A bearer token authenticates the JSON API (/api/...) and nothing else: the
admin and the HTML pages treat its bearer as whoever their session says, and
keep CSRF on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from albums.models import Album
from albums.tests.builders import make_album, make_image
from imagineer_project.testing import make_user
from imagineer_project.tokens import api_token_create

pytestmark = pytest.mark.django_db

# Pages only a signed-in staff member may open.
STAFF_PAGES = [
    "/admin/",
    "/admin/albums/album/",
    "/admin/albums/image/",
    "/admin/imagineer/apitoken/",
    "/generate/",
    "/images/{hidden}/",
]


@pytest.fixture
def bearer(db: Any) -> Client:
    """A browser-like client (CSRF enforced) that sends a superuser's token."""
    root = make_user(username="root", staff=True, is_superuser=True)
    client = Client(enforce_csrf_checks=True)
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {api_token_create(user=root)[1]}"
    return client


@pytest.fixture
def hidden() -> Any:
    return make_image(album=make_album(name="Drafts", visibility="private"), seed=7)


def test_a_token_opens_no_page_outside_the_api(bearer, hidden) -> None:
    opened = [
        page
        for page in STAFF_PAGES
        if bearer.get(page.format(hidden=hidden.pk)).status_code == 200
    ]
    assert opened == []
    # The admin sends it to the login page, as it would anyone signed out.
    response = bearer.get("/admin/albums/album/")
    assert (response.status_code, response["Location"]) == (
        302,
        "/admin/login/?next=/admin/albums/album/",
    )


def test_a_token_cannot_write_through_the_admin_without_csrf(bearer) -> None:
    form = {"name": "Planted", "slug": "planted", "visibility": "public"}
    response = bearer.post("/admin/albums/album/add/", form | {"source_kind": "manual"})
    assert response.status_code in {302, 403}
    assert not Album.objects.filter(name="Planted").exists()


def test_a_bad_token_on_a_page_is_ignored_not_answered_in_json(client) -> None:
    response = client.get("/", HTTP_AUTHORIZATION="Bearer imt_not-a-real-token")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


def test_the_token_still_opens_the_api_without_csrf(bearer, hidden) -> None:
    assert bearer.get(f"/api/images/{hidden.pk}").status_code == 200
    response = bearer.post(
        "/api/albums",
        data=json.dumps({"name": "Scripted"}),
        content_type="application/json",
    )
    assert response.status_code == 201
    assert Album.objects.filter(name="Scripted").exists()
    bad = Client().get("/api/albums", HTTP_AUTHORIZATION="Bearer imt_revoked")
    assert (bad.status_code, bad.json()["error_code"]) == (401, "unauthorized")
