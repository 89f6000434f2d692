"""Test support that every app's tests use, loaded first by
`-p imagineer_project.testing` (pyproject.toml) so the environment below is set
before Django reads its settings.

Tests run django-q2 in sync mode (tasks execute inline) and never reach the
real Anthropic API. The shared fixtures are in the repository's conftest.py;
the builders here need no app (albums' own are albums/tests/builders.py).
"""

from __future__ import annotations

import atexit
import io
import os
import random
import shutil
import tempfile
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
# pytest-xdist workers share the cores: each torch (and the subprocesses it
# starts) takes its share of threads, since OpenMP threads that outnumber the
# cores spin against each other and a 4-step tiny training then takes minutes.
if workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = str(max(1, (os.cpu_count() or 1) // int(workers)))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, _threads)
# Each test process (each pytest-xdist worker too) gets its own var/: the file
# cache, static root and secret key of one never meet another's, nor the
# developer's library (a tiny model built there by `make demo` would change
# what the default base model is).
if "IMAGINEER_VAR_DIR" not in os.environ:
    _var_dir = tempfile.mkdtemp(prefix="imagineer-test-var-")
    os.environ["IMAGINEER_VAR_DIR"] = _var_dir
    atexit.register(shutil.rmtree, _var_dir, ignore_errors=True)


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


def smaller_copy(data: bytes) -> bytes:
    """The same picture at half the size, re-encoded as a JPEG: a near
    duplicate of `data` (a few bits of pHash apart)."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(data)) as im:
        buf = io.BytesIO()
        im.resize((im.width // 2, im.height // 2)).save(buf, "JPEG", quality=70)
        return buf.getvalue()


def make_user(*, username: str = "user", staff: bool = False, **extra: Any) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(
        username=username, password="pw-for-tests-only", is_staff=staff, **extra
    )


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
