from __future__ import annotations

from typing import Any

import pytest

from imagineer_project.tokens import api_token_create

pytestmark = pytest.mark.django_db

TOKENS = "/admin/imagineer/apitoken/"


def test_token_list_shows_the_prefix_never_the_hash(
    admin_client: Any, admin_user: Any
) -> None:
    token, plain = api_token_create(user=admin_user, name="backup script")

    listing = admin_client.get(TOKENS)
    detail = admin_client.get(f"{TOKENS}{token.pk}/change/")

    assert token.prefix in listing.text
    assert "backup script" in listing.text
    assert "create_api_token" in listing.text
    for page in (listing, detail):
        assert page.status_code == 200
        assert token.key_hash not in page.text
        assert plain not in page.text


def test_tokens_are_not_created_through_the_admin(admin_client: Any) -> None:
    assert admin_client.get(f"{TOKENS}add/").status_code == 403


def test_deleting_a_token_revokes_it(admin_client: Any, admin_user: Any) -> None:
    token, plain = api_token_create(user=admin_user)

    admin_client.post(f"{TOKENS}{token.pk}/delete/", {"post": "yes"})

    response = admin_client.get("/api/health", HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert response.status_code == 401
