"""The OpenAPI schema says what the API really does: every error status an
operation answers carries the one error envelope, every operation says which
credentials it takes, and parameters are as tight as the code.

bin/apicheck runs schemathesis against a live server for the rest; these are
the fast guarantees, read from /api/openapi.json as a client would."""

from __future__ import annotations

import re
from typing import Any

import pytest

from albums.tests.builders import make_album, make_image
from imagineer_project.testing import make_user
from imagineer_project.tokens import api_token_create

pytestmark = pytest.mark.django_db

ENVELOPE = {"$ref": "#/components/schemas/ErrorOut"}


@pytest.fixture
def schema(client) -> dict[str, Any]:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, details)
        for path, methods in schema["paths"].items()
        for method, details in methods.items()
    ]


def test_every_error_status_carries_the_envelope(schema) -> None:
    errors = 0
    for method, path, details in operations(schema):
        for status, response in details["responses"].items():
            if (method, path, status) == ("GET", "/api/health", "503"):
                continue  # degraded: the health report itself, declared so
            if int(status) >= 400:
                errors += 1
                content = response["content"]["application/json"]["schema"]
                assert content == ENVELOPE, (method, path, status)
    assert errors > 200
    envelope = schema["components"]["schemas"]["ErrorOut"]
    assert set(envelope["required"]) == {
        "error",
        "error_code",
        "trace_id",
        "timestamp",
        "details",
    }


def test_every_operation_declares_its_security(schema) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["sessionCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "sessionid",
        "description": schemes["sessionCookie"]["description"],
    }
    assert "X-CSRFToken" in schemes["sessionCookie"]["description"]
    assert schemes["bearerToken"]["type"] == "http"
    assert schemes["bearerToken"]["scheme"] == "bearer"
    anonymous = set()
    for method, path, details in operations(schema):
        security = details["security"]
        assert {"sessionCookie": []} in security, (method, path)
        assert {"bearerToken": []} in security, (method, path)
        codes = set(details["responses"])
        if {} in security:
            anonymous.add(f"{method} {path}")
            assert "401" not in codes, (method, path)
        else:
            assert {"401", "403"} <= codes, (method, path)
    # The public reads, and nothing else, say they need no credentials.
    assert anonymous == {
        "GET /api/health",
        "GET /api/albums",
        "GET /api/albums/{album_ref}",
        "GET /api/albums/{album_ref}/images",
        "GET /api/images",
        "GET /api/images/{image_id}",
        "GET /api/images/{image_id}/file",
        "GET /api/images/{image_id}/thumbnail",
        "GET /api/images/{image_id}/labels",
    }


def test_inferred_and_declared_statuses(schema) -> None:
    paths = schema["paths"]

    def codes(path: str, method: str) -> set[int]:
        return {int(c) for c in paths[path][method]["responses"]}

    # A path parameter can be unknown; input can be invalid; a body can be
    # malformed JSON. Nothing to look up and no input: neither 404 nor 422.
    # An {int:id} path parameter is never validated (a non-number matches no
    # endpoint: 404), so it alone makes no 422.
    assert codes("/api/images/{image_id}", "get") == {200, 404}
    assert {404, 422} <= codes("/api/images/{image_id}/thumbnail", "get")
    assert {400, 401, 403, 422} <= codes("/api/albums", "post")
    assert codes("/api/training/runs/config", "get") == {200, 401, 403}
    # What only the handler knows, declared on it.
    assert 503 in codes("/api/images/{image_id}/label", "post")  # no Claude key
    assert 503 in codes("/api/albums/{album_ref}/label", "post")
    assert 413 in codes("/api/images/upload", "post")
    assert 413 in codes("/api/images/bulk-upload", "post")
    assert 429 in codes("/api/generate", "post")
    assert 404 in codes("/api/images", "get")  # ?album= names an album
    for kind in ("labeling-jobs", "scrape-jobs", "uploads", "generation-jobs"):
        assert 409 in codes(f"/api/{kind}/{{run_id}}/cancel", "post")
        assert 409 in codes(f"/api/{kind}/{{run_id}}/retry", "post")


def test_each_enum_keeps_its_own_values(schema) -> None:
    """Two enums (or schemas) with one class name no longer overwrite each
    other: the album's source kind, the label's kind and the crawl log's
    outcome each list their own values."""

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node or "allOf" in node:
            if "allOf" in node:
                node = node["allOf"][0]
                continue
            node = schema["components"]["schemas"][node["$ref"].split("/")[-1]]
        return node

    def param(path: str, name: str) -> dict[str, Any]:
        for p in schema["paths"][path]["get"]["parameters"]:
            if p["name"] == name:
                return p["schema"]
        raise AssertionError(name)

    album_in = schema["paths"]["/api/albums"]["post"]["requestBody"]
    body = resolve(album_in["content"]["application/json"]["schema"])
    assert "manual" in resolve(body["properties"]["source_kind"])["enum"]
    outcome = param("/api/scrape-jobs/{job_id}/log", "outcome")
    values = [
        v
        for option in outcome.get("anyOf", [outcome])
        for v in resolve(option).get("enum", [])
    ]
    assert "fetched" in values and "created" not in values
    label_in = schema["paths"]["/api/images/{image_id}/labels"]["post"]
    body = resolve(label_in["requestBody"]["content"]["application/json"]["schema"])
    assert "caption" in resolve(body["properties"]["kind"])["enum"]


def test_thumbnail_size_is_an_enum_of_the_configured_sizes(schema, client) -> None:
    size = next(
        p
        for p in schema["paths"]["/api/images/{image_id}/thumbnail"]["get"][
            "parameters"
        ]
        if p["name"] == "size"
    )
    assert size["schema"]["enum"] == [256, 512]
    image = make_image()
    assert client.get(f"/api/images/{image.pk}/thumbnail?size=300").status_code == 422
    assert client.get(f"/api/images/{image.pk}/thumbnail?size=512").status_code == 200


def test_the_cursor_pattern_is_what_the_lists_accept(schema, client) -> None:
    album = make_album(name="Cards")
    for n in range(3):
        make_image(album=album, seed=n)
    for path, url in [
        ("/api/images", "/api/images?limit=1"),
        ("/api/albums/{album_ref}/images", f"/api/albums/{album.slug}/images?limit=1"),
    ]:
        cursor = next(
            p
            for p in schema["paths"][path]["get"]["parameters"]
            if p["name"] == "cursor"
        )["schema"]
        pattern = re.compile(cursor["pattern"])
        next_cursor = client.get(url).json()["next_cursor"]
        assert pattern.fullmatch(next_cursor), (path, next_cursor)
        assert len(next_cursor) <= cursor["maxLength"]
        assert client.get(f"{url}&cursor={next_cursor}").status_code == 200
        # Any cursor of that pattern is a page (maybe empty), not an error.
        made_up = "1.999999999999999999" if "\\." in cursor["pattern"] else "123456"
        assert pattern.fullmatch(made_up)
        assert client.get(f"{url}&cursor={made_up}").status_code == 200
        refused = client.get(f"{url}&cursor=bm9wZQ")
        assert refused.status_code == 422
        assert refused.json()["error_code"] == "invalid_cursor"


def test_an_unknown_api_path_answers_the_envelope(client) -> None:
    for url in ("/api/images/not-a-number", "/api/no-such-thing"):
        response = client.get(url)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json()["error_code"] == "not_found"


def test_a_declared_status_is_what_the_live_api_answers(client) -> None:
    """401 anonymous, 403 for a non-staff token, 404 for an unknown id: each
    is declared where it is answered, in the envelope."""
    plain = make_user(username="viewer")
    _, token = api_token_create(user=plain)
    cases = [
        (client.post("/api/albums", {}, content_type="application/json"), 401),
        (
            client.post(
                "/api/albums",
                {"name": "x"},
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {token}",
            ),
            403,
        ),
        (client.get("/api/images/987654"), 404),
    ]
    for response, status in cases:
        assert response.status_code == status
        assert set(response.json()) == {
            "error",
            "error_code",
            "trace_id",
            "timestamp",
            "details",
        }


@pytest.mark.parametrize("body", ["[null, null]", "null", "3", '"name"'])
def test_a_body_that_is_not_an_object_is_a_400(client, staff_token, body) -> None:
    """Before, ninja read `[null, null]` or `null` as an empty object, and a
    PATCH with it answered 200 having changed nothing."""
    album = make_album(name="Cards")
    for method, url in [
        ("post", "/api/albums"),
        ("patch", f"/api/albums/{album.slug}"),
    ]:
        response = getattr(client, method)(
            url,
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {staff_token}",
        )
        assert response.status_code == 400, (method, url)
        assert response.json()["error_code"] == "bad_request"


def test_an_optional_body_is_an_object_or_nothing(schema) -> None:
    body = schema["paths"]["/api/albums/{album_ref}/images"]["delete"]["requestBody"]
    assert body["required"] is False
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ImageIdsIn"
    }


def test_generation_limits_are_the_settings(schema, settings) -> None:
    """The generation service checks its limits from settings; the schema now
    declares the same ones (it said only "integer" before)."""
    body = schema["components"]["schemas"]["GenerateIn"]["properties"]
    assert body["width"]["maximum"] == settings.GENERATION_MAX_SIZE
    assert body["width"]["minimum"] == settings.GENERATION_MIN_SIZE
    assert body["width"]["multipleOf"] == 8
    assert body["steps"]["maximum"] == settings.GENERATION_MAX_STEPS
    assert body["num_images"]["maximum"] == settings.GENERATION_MAX_IMAGES
    assert body["prompt"]["maxLength"] == settings.GENERATION_MAX_PROMPT_CHARS
    assert "ddim" in body["scheduler"]["enum"]
