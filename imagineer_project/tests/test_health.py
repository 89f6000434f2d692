"""/api/health: a monitor may poll it as often as it likes without writing to
storage each time, and a degraded service answers 503."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.core.files import File

from imagineer_project.lib.storage import AtomicFileSystemStorage

pytestmark = pytest.mark.django_db


class CountingStorage(AtomicFileSystemStorage):
    """The real local storage, counting the files written through it."""

    saved: ClassVar[list[str]] = []

    def _save(self, name: str, content: File) -> str:
        CountingStorage.saved.append(name)
        return super()._save(name, content)


def use_storage(settings: Any, location: Path) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": f"{__name__}.CountingStorage",
            "OPTIONS": {"location": str(location), "base_url": "/media/"},
        },
    }


@pytest.fixture
def counted(settings: Any, tmp_path: Path) -> list[str]:
    CountingStorage.saved = []
    use_storage(settings, tmp_path / "counted")
    return CountingStorage.saved


def test_a_hundred_anonymous_calls_write_to_storage_at_most_once(
    client, counted
) -> None:
    for _ in range(100):
        response = client.get("/api/health")
        assert (response.status_code, response.json()["status"]) == (200, "ok")
    assert len(counted) == 1


def test_the_probe_runs_again_once_its_result_is_old(client, counted, settings) -> None:
    settings.HEALTH_STORAGE_PROBE_SECONDS = 0
    for _ in range(3):
        client.get("/api/health")
    assert len(counted) == 3


def test_degraded_storage_answers_503(client, settings, tmp_path: Path) -> None:
    # A plain file where the storage folder should be: every write fails.
    blocked = tmp_path / "not-a-folder"
    blocked.write_bytes(b"")
    use_storage(settings, blocked)
    response = client.get("/api/health")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["storage"] == {"ok": False, "backend": "CountingStorage"}
    assert body["database"]["ok"] is True
    assert str(tmp_path) not in response.content.decode()


def test_storage_that_recovers_is_seen_once_the_probe_is_retried(
    client, settings, tmp_path: Path
) -> None:
    blocked = tmp_path / "store"
    blocked.write_bytes(b"")
    use_storage(settings, blocked)
    assert client.get("/api/health").status_code == 503
    blocked.unlink()
    settings.HEALTH_STORAGE_PROBE_SECONDS = 0
    assert client.get("/api/health").status_code == 200
