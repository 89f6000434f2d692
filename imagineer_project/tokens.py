"""API tokens: `Authorization: Bearer imt_...` for scripts and the CLI, valid
for the JSON API (`/api/...`) only."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from imagineer_project.models import ApiToken

TOKEN_PREFIX = "imt_"
# What a token authenticates: the JSON API only, never the admin or the pages.
TOKEN_SCOPE = "/api/"


def token_scope_covers(path: str) -> bool:
    """Whether a request to `path` (its path_info) may authenticate by token."""
    return path.startswith(TOKEN_SCOPE)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_create(*, user: AbstractBaseUser, name: str = "") -> tuple[ApiToken, str]:
    """Create a token; returns the row and the plain token (never stored)."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=plain[:12], key_hash=_hash(plain)
    )
    return token, plain


def user_for_bearer_header(header: str) -> AbstractBaseUser | None:
    scheme, _, plain = header.partition(" ")
    if scheme.lower() != "bearer" or not plain.startswith(TOKEN_PREFIX):
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=_hash(plain.strip()), user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    # Touch last_used at most once a minute, not on every request.
    if token.last_used is None or now - token.last_used > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
    return token.user
