"""API tokens in the admin: made through the same service as the CLI, shown
once, revoked by deleting."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission

from imagineer_project.models import ApiToken
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
    assert "Add API token" in listing.text
    for page in (listing, detail):
        assert page.status_code == 200
        assert token.key_hash not in page.text
        assert plain not in page.text


def test_the_add_page_offers_the_current_user_first(
    admin_client: Any, admin_user: Any
) -> None:
    page = admin_client.get(f"{TOKENS}add/")

    assert page.status_code == 200
    assert page.context["form"]["user"].value() == admin_user.pk
    assert "Create token" in page.text


def test_an_added_token_is_shown_once_and_authenticates_the_api(
    admin_client: Any, admin_user: Any
) -> None:
    made = admin_client.post(
        f"{TOKENS}add/", {"user": admin_user.pk, "name": "nightly export"}
    )

    plain = made.context["plain"]
    token = ApiToken.objects.get()
    assert made.status_code == 200
    assert "no-store" in made["Cache-Control"]
    assert plain.startswith("imt_") and plain in made.text
    assert "it will not be shown again" in made.text
    assert (token.user, token.name, token.prefix) == (
        admin_user,
        "nightly export",
        plain[:12],
    )
    assert plain not in admin_client.get(TOKENS).text
    assert plain not in admin_client.get(f"{TOKENS}{token.pk}/change/").text
    api = admin_client.get("/api/health", HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert api.status_code == 200


def test_a_superuser_may_make_a_token_for_another_active_user(
    admin_client: Any, django_user_model: Any
) -> None:
    robot = django_user_model.objects.create_user("robot", is_staff=True)
    django_user_model.objects.create_user("gone", is_active=False)

    page = admin_client.get(f"{TOKENS}add/")
    admin_client.post(f"{TOKENS}add/", {"user": robot.pk, "name": "ci"})

    choices = [label for _, label in page.context["form"].fields["user"].choices]
    assert "robot" in choices and "gone" not in choices
    assert ApiToken.objects.get().user == robot


def test_staff_without_superuser_make_tokens_for_themselves_only(
    client: Any, django_user_model: Any, admin_user: Any
) -> None:
    staff = django_user_model.objects.create_user("editor", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__endswith="_apitoken")
    )
    client.force_login(staff)

    refused = client.post(f"{TOKENS}add/", {"user": admin_user.pk})
    client.post(f"{TOKENS}add/", {"user": staff.pk})

    assert "user" in refused.context["form"].errors
    assert list(ApiToken.objects.values_list("user__username", flat=True)) == ["editor"]


def test_revoke_selected_revokes_the_tokens(admin_client: Any, admin_user: Any) -> None:
    _, first = api_token_create(user=admin_user, name="one")
    kept, second = api_token_create(user=admin_user, name="two")
    revoked = ApiToken.objects.exclude(pk=kept.pk).get()

    admin_client.post(
        TOKENS, {"action": "revoke", "_selected_action": [revoked.pk]}, follow=True
    )

    assert list(ApiToken.objects.all()) == [kept]
    for plain, status in ((first, 401), (second, 200)):
        response = admin_client.get("/api/health", HTTP_AUTHORIZATION=f"Bearer {plain}")
        assert response.status_code == status


def test_deleting_a_token_revokes_it(admin_client: Any, admin_user: Any) -> None:
    token, plain = api_token_create(user=admin_user)

    admin_client.post(f"{TOKENS}{token.pk}/delete/", {"post": "yes"})

    response = admin_client.get("/api/health", HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert response.status_code == 401
