"""Fixtures shared by every app's tests: media in a per-test folder, cheap
passwords, users and clients of each kind, an API token, and the local fake of
the Anthropic Messages API. Builders are plain functions
(imagineer_project.testing, albums/tests/builders.py, <app>/tests/builders.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from imagineer_project.testing import make_user


@pytest.fixture(autouse=True)
def _quiet_heartbeat(settings: Any) -> None:
    # Every run's body runs under a heartbeat thread (runs.run_heartbeat). Its
    # writes would wait on a test's open transaction, so tests keep it asleep;
    # the tests of the heartbeat itself set a short interval.
    settings.RUN_HEARTBEAT_SECONDS = 3600


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
    from imagineer_project.testing.fake_anthropic import API_KEY, FakeAnthropic

    with FakeAnthropic() as fake:
        settings.ANTHROPIC_API_KEY = API_KEY
        settings.ANTHROPIC_BASE_URL = fake.base_url
        settings.ANTHROPIC_MAX_RETRIES = 2
        yield fake


@pytest.fixture
def s3_location() -> str:
    """The key prefix `s3_bucket` stores under (S3_PREFIX); a module overrides
    this fixture to test a storage with a location."""
    return ""


@pytest.fixture
def s3_bucket(settings: Any, monkeypatch: Any, s3_location: str) -> Any:
    """Default storage on django-storages' S3 backend, with moto standing in
    for S3: yields a boto3 client of the bucket "media"."""
    moto = pytest.importorskip("moto")
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="media")
        options = {"bucket_name": "media", "region_name": "us-east-1"}
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    **options,
                    "file_overwrite": True,
                    **({"location": s3_location} if s3_location else {}),
                },
            },
        }
        yield client


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny real Stable Diffusion pipeline on disk, built once per session
    (training's tests and the log tests' generation share it)."""
    from training.ml.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("ml") / "tiny-sd")


@pytest.fixture
def fresh_cache(settings: Any) -> None:
    """An empty in-memory cache and an empty per-trace log store: rate-limit
    counters and kept log lines of earlier tests do not leak in."""
    from django.core.cache import cache

    from imagineer_project.logcapture import STORE

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "tests",
        }
    }
    cache.clear()
    STORE.clear()


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Debian's headless Chromium through Playwright (skips when it is absent;
    fails under CI=true). Helpers: imagineer_project.testing.browser."""
    from imagineer_project.lib.chromium import CHROMIUM_ARGS
    from imagineer_project.testing import require_chromium

    # Playwright's sync API runs an event loop in this thread; Django would
    # otherwise refuse ORM calls made from the test body while it is running.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()
