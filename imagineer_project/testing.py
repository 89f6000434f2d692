"""Shared pytest fixtures and builders (loaded by `-p imagineer_project.testing`).

Tests run django-q2 in sync mode (tasks execute inline) and keep media in a
per-test temporary folder. Builders are plain `make_x(**overrides)` functions.
"""

from __future__ import annotations

import io
import os
import random
from typing import Any

import pytest

# Must be set before Django reads settings: django-q2 binds `sync` at import time.
os.environ.setdefault("Q_SYNC", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests never reach the real Anthropic API: labeling tests opt in to the local
# fake (the `fake_anthropic` fixture), which sets both again.
os.environ["ANTHROPIC_API_KEY"] = ""
os.environ["ANTHROPIC_BASE_URL"] = ""


def make_image_bytes(
    fmt: str = "JPEG",
    size: tuple[int, int] = (64, 48),
    *,
    seed: int | None = None,
    mode: str = "RGB",
    **save_options: Any,
) -> bytes:
    """A real encoded image with random-ish content (distinct per seed)."""
    from PIL import Image as PILImage

    rng = random.Random(seed)
    im = PILImage.new(mode, size, tuple(rng.randrange(256) for _ in mode))
    # A few blocks so perceptual hashes differ between seeds.
    for _ in range(6):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        block = PILImage.new(
            mode,
            (max(1, size[0] // 3), max(1, size[1] // 3)),
            tuple(rng.randrange(256) for _ in mode),
        )
        im.paste(block, (x, y))
    buf = io.BytesIO()
    im.save(buf, fmt, **save_options)
    return buf.getvalue()


def make_user(*, username: str = "user", staff: bool = False, **extra: Any) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(
        username=username, password="pw-for-tests-only", is_staff=staff, **extra
    )


def make_album(**overrides: Any) -> Any:
    from albums.services import album_create

    fields = {"name": "Tarot deck"} | overrides
    return album_create(**fields)


def make_image(
    *,
    album: Any = None,
    seed: int | None = None,
    fmt: str = "JPEG",
    size: tuple[int, int] = (64, 48),
    **fields: Any,
) -> Any:
    """Ingest a real generated image; then set extra fields (is_nsfw, ...)."""
    from albums.models import Image, SourceKind
    from albums.services import image_ingest

    seed = random.randrange(1 << 30) if seed is None else seed
    result = image_ingest(
        data=make_image_bytes(fmt, size, seed=seed),
        filename=f"img-{seed}.{fmt.lower()}",
        source_kind=fields.pop("source_kind", SourceKind.UPLOAD),
        album=album,
    )
    assert result.image is not None, result
    if fields:
        Image.objects.filter(pk=result.image.pk).update(**fields)
        result.image.refresh_from_db()
    return result.image


def admin_listed(response: Any) -> list[int]:
    """The pks an admin changelist response shows, in order."""
    assert response.status_code == 200
    return [obj.pk for obj in response.context["cl"].result_list]


def query_count(client: Any, url: str) -> int:
    """Queries a GET of `url` costs once caches are warm (for N+1 checks)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm the session and content-type caches
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx)


def require_chromium() -> str:
    """The Chromium binary, or skip the test; in CI (CI=true) its absence fails."""
    from imagineer_project.lib.chromium import chromium_executable

    executable = chromium_executable()
    if executable is None:
        reason = "no chromium binary (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    return executable


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    # The default PBKDF2 costs ~0.5 s per user made; tests make many.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _media_in_tmp(settings: Any, tmp_path: Any) -> None:
    media = tmp_path / "media"
    settings.MEDIA_ROOT = media
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "imagineer_project.lib.storage.AtomicFileSystemStorage",
            "OPTIONS": {"location": str(media), "base_url": "/media/"},
        },
    }


@pytest.fixture
def staff_user(db: Any) -> Any:
    return make_user(username="staff", staff=True)


@pytest.fixture
def plain_user(db: Any) -> Any:
    return make_user(username="viewer", staff=False)


@pytest.fixture
def staff_client(client: Any, staff_user: Any) -> Any:
    client.force_login(staff_user)
    return client


@pytest.fixture
def user_client(client: Any, plain_user: Any) -> Any:
    client.force_login(plain_user)
    return client


@pytest.fixture
def staff_token(staff_user: Any) -> str:
    from imagineer_project.tokens import api_token_create

    return api_token_create(user=staff_user, name="tests")[1]


@pytest.fixture
def call_as(db: Any, staff_user: Any, plain_user: Any, staff_token: str) -> Any:
    """call_as(kind): a client for an anonymous visitor, a signed-in non-staff
    user, a staff session (CSRF not enforced; see test_api_common) or a staff
    API token."""

    from django.test import Client

    def make(kind: str) -> Any:
        client = Client()
        if kind == "user":
            client.force_login(plain_user)
        elif kind == "staff":
            client.force_login(staff_user)
        elif kind == "token":
            client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {staff_token}"
        return client

    return make


@pytest.fixture
def fake_anthropic(settings: Any) -> Any:
    """The local Messages API fake, with the SDK configured to use it."""
    from labeling.fake_anthropic import API_KEY, FakeAnthropic

    with FakeAnthropic() as fake:
        settings.ANTHROPIC_API_KEY = API_KEY
        settings.ANTHROPIC_BASE_URL = fake.base_url
        settings.ANTHROPIC_MAX_RETRIES = 2
        yield fake
