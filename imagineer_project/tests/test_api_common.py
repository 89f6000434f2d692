"""What every API endpoint shares: the error shape, trace ids, CSRF, pagination,
the health report, and never showing a storage path."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils.crypto import get_random_string

from albums.models import Album, UploadRun
from albums.tests.builders import make_album, make_image
from imagineer_project.errors import Invalid
from imagineer_project.pagination import (
    PageIn,
    decode_cursor,
    encode_cursor,
    keyset_paginate,
)

pytestmark = pytest.mark.django_db

ENVELOPE = {"error", "error_code", "trace_id", "timestamp", "details"}


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def post_json(client: Client, path: str, body: Any, **headers: str) -> Any:
    return client.post(
        path, data=json.dumps(body), content_type="application/json", **headers
    )


# --- errors and trace ids ---------------------------------------------------------


def test_error_envelope_carries_the_trace_id(client) -> None:
    response = client.get("/api/images/4242")
    body = response.json()
    assert response.status_code == 404
    assert set(body) == ENVELOPE
    assert (body["error"], body["error_code"], body["details"]) == (
        "Image 4242 not found.",
        "not_found",
        {},
    )
    assert re.fullmatch(r"[0-9a-f]{32}", body["trace_id"])
    assert response["X-Trace-Id"] == body["trace_id"]
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None


def test_a_well_formed_caller_trace_id_is_echoed(client) -> None:
    response = client.get("/api/images/4242", HTTP_X_TRACE_ID="job-42.retry_1")
    assert response["X-Trace-Id"] == response.json()["trace_id"] == "job-42.retry_1"
    ok = client.get("/api/albums", HTTP_X_TRACE_ID="job-42.retry_1")
    assert ok["X-Trace-Id"] == "job-42.retry_1"


@pytest.mark.parametrize("offered", ["short", "has spaces in it", "x" * 65, "<script>"])
def test_a_malformed_caller_trace_id_is_replaced(client, offered: str) -> None:
    response = client.get("/api/images/4242", HTTP_X_TRACE_ID=offered)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Trace-Id"])
    assert response.json()["trace_id"] == response["X-Trace-Id"]


def test_validation_errors_use_the_envelope(staff_client) -> None:
    response = post_json(staff_client, "/api/albums", {"name": 7})
    body = response.json()
    assert response.status_code == 422
    assert set(body) == ENVELOPE
    assert body["error_code"] == "validation_error"
    assert [e["loc"] for e in body["details"]["errors"]] == [
        ["body", "payload", "name"]
    ]


def test_an_unknown_api_path_is_a_json_404(client) -> None:
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert set(response.json()) == ENVELOPE


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/api/albums", ["GET", "POST"]),
        ("put", "/api/health", ["GET"]),
        ("post", "/api/images/1/thumbnail", ["GET"]),
    ],
)
def test_a_method_the_path_lacks_is_a_json_405(
    staff_client, method: str, path: str, allowed: list[str]
) -> None:
    response = getattr(staff_client, method)(path)
    body = response.json()
    assert response.status_code == 405
    assert set(body) == ENVELOPE
    assert body["error_code"] == "method_not_allowed"
    assert body["details"] == {"allowed": allowed}
    assert method.upper() in body["error"] and allowed[0] in body["error"]
    assert response["Allow"] == ", ".join(allowed)
    assert response["X-Trace-Id"] == body["trace_id"]


def test_a_405_outside_the_api_stays_as_it_was(staff_client) -> None:
    # The admin's POST-only views answer browsers as Django does.
    response = staff_client.get("/admin/logout/")
    assert response.status_code == 405
    assert not response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    ("client_fixture", "status", "code"),
    [("client", 401, "unauthorized"), ("user_client", 403, "forbidden")],
)
def test_refused_writes_use_the_envelope(
    request, client_fixture: str, status: int, code: str
) -> None:
    caller = request.getfixturevalue(client_fixture)
    response = post_json(caller, "/api/albums", {"name": "A"})
    assert (response.status_code, response.json()["error_code"]) == (status, code)
    assert response["X-Trace-Id"] == response.json()["trace_id"]
    assert not Album.objects.exists()


def test_a_bad_bearer_token_is_401_even_for_reads(client) -> None:
    response = client.get("/api/albums", HTTP_AUTHORIZATION="Bearer imt_not-a-token")
    assert response.status_code == 401
    assert set(response.json()) == ENVELOPE


# --- CSRF -------------------------------------------------------------------------


@pytest.fixture
def csrf_client(staff_user) -> Client:
    """A staff session on a client that enforces CSRF like a browser would."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    return client


def test_a_session_write_without_the_csrf_token_is_403(csrf_client) -> None:
    response = post_json(csrf_client, "/api/albums", {"name": "A"})
    assert response.status_code == 403
    assert response.json()["error_code"] == "forbidden"
    assert "CSRF" in response.json()["error"]
    assert not Album.objects.exists()
    album = make_album(name="B")
    assert csrf_client.delete(f"/api/albums/{album.pk}").status_code == 403
    assert Album.objects.filter(pk=album.pk).exists()


def test_a_session_write_with_the_csrf_token_works(csrf_client) -> None:
    secret = get_random_string(32)
    csrf_client.cookies[django_settings.CSRF_COOKIE_NAME] = secret
    response = post_json(
        csrf_client, "/api/albums", {"name": "A"}, HTTP_X_CSRFTOKEN=secret
    )
    assert response.status_code == 201
    assert Album.objects.get().name == "A"


def test_a_session_read_needs_no_csrf_token(csrf_client) -> None:
    assert csrf_client.get("/api/uploads").status_code == 200


def test_bearer_token_writes_need_no_csrf_token(staff_token) -> None:
    client = Client(enforce_csrf_checks=True)
    response = post_json(
        client, "/api/albums", {"name": "A"}, HTTP_AUTHORIZATION=f"Bearer {staff_token}"
    )
    assert response.status_code == 201


# --- pagination -------------------------------------------------------------------


def test_cursor_round_trip() -> None:
    assert decode_cursor(encode_cursor([7, 12]), 2) == [7, 12]
    assert "=" not in encode_cursor([1])


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        "e30",  # {}
        encode_cursor([1, 2]),  # wrong length for a one-key list
        "WyJ4Il0",  # ["x"]
        "W3RydWVd",  # [true]
        "WzEuNV0",  # [1.5]
        "%%%",
    ],
)
def test_malformed_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(Invalid) as err:
        decode_cursor(cursor, 1)
    assert (err.value.status, err.value.code) == (422, "invalid_cursor")


@pytest.mark.parametrize(
    "path", ["/api/albums", "/api/images", "/api/albums/tarot-deck/images"]
)
def test_a_malformed_cursor_is_a_clear_422(client, path: str) -> None:
    make_album(name="Tarot deck")
    response = client.get(f"{path}?cursor=bm9wZQ")
    assert response.status_code == 422
    assert response.json()["error_code"] == "invalid_cursor"
    assert "cursor" in response.json()["error"]


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten"])
def test_limit_is_between_1_and_200(client, limit: str) -> None:
    assert client.get(f"/api/albums?limit={limit}").status_code == 422


def test_keyset_paginate_with_two_keys_and_ties() -> None:
    # Ties on the first key are broken by the second, in both directions.
    for name in ["b", "a", "b", "a", "c"]:
        UploadRun.objects.create(progress_total=ord(name))
    order = list(
        UploadRun.objects.order_by("-progress_total", "id").values_list("pk", flat=True)
    )
    seen, cursor = [], None
    while True:
        page = keyset_paginate(
            UploadRun.objects.all(),
            keys=["-progress_total", "id"],
            page=PageIn(cursor=cursor, limit=2),
        )
        seen += [run.pk for run in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == order


def test_an_exactly_full_last_page_has_no_next_cursor() -> None:
    for n in range(4):
        UploadRun.objects.create(progress_total=n)
    page = keyset_paginate(UploadRun.objects.all(), keys=["id"], page=PageIn(limit=4))
    assert (len(page.items), page.next_cursor) == (4, None)


# --- health and leaks -------------------------------------------------------------


def test_health_reports_without_paths(client, settings) -> None:
    response = client.get("/api/health")
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {
        "status",
        "version",
        "environment",
        "database",
        "queue",
        "storage",
        "disk",
    }
    assert body["status"] == "ok"
    # The disk check names roles, never folders.
    roles = {role for fs in body["disk"]["filesystems"] for role in fs["roles"]}
    assert roles >= {"media", "training"}
    assert body["version"] == settings.IMAGINEER_VERSION
    assert body["database"] == {"ok": True, "vendor": body["database"]["vendor"]}
    assert body["storage"] == {"ok": True, "backend": "AtomicFileSystemStorage"}
    text = response.content.decode()
    for secret in (settings.MEDIA_ROOT, settings.VAR_DIR, settings.BASE_DIR):
        assert str(secret) not in text


STORAGE_KEY = re.compile(r"(?<!/api/)\b(images|thumbnails)/[0-9a-f]{2}/|staging/")


@pytest.mark.parametrize("caller", ["client", "staff_client"])
def test_no_response_shows_a_storage_path(request, settings, caller: str) -> None:
    client = request.getfixturevalue(caller)
    album = make_album(name="Tarot deck")
    safe = make_image(album=album, seed=1, source_url="https://example.org/a.jpg")
    make_image(album=album, seed=2, is_nsfw=True)
    UploadRun.objects.create(
        album=album, staged_files=[{"key": "staging/x", "name": "a"}]
    )
    paths = [
        "/api/health",
        "/api/albums",
        "/api/albums/tarot-deck",
        "/api/albums/tarot-deck/images",
        "/api/images",
        f"/api/images/{safe.pk}",
        "/api/images/4242",
        "/api/images/?cursor=junk",
        "/api/uploads",
        "/api/uploads/1",
        "/api/nowhere",
    ]
    for path in paths:
        response = client.get(path, follow=True)
        text = response.content.decode()
        assert str(settings.MEDIA_ROOT) not in text, path
        assert "var/media" not in text, path
        assert not STORAGE_KEY.search(text), (path, text)
