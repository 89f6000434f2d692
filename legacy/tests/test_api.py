"""/api/admin/legacy-imports: staff only, folders only under
LEGACY_IMPORT_ROOTS, and no absolute path in any answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from legacy.models import ImportRun
from legacy.tasks import run_legacy_import
from legacy.tests.builders import LegacyTree, build_legacy_tree

pytestmark = pytest.mark.django_db
BASE = "/api/admin/legacy-imports"


@pytest.fixture
def tree(tmp_path: Path, settings: Any) -> LegacyTree:
    tree = build_legacy_tree(tmp_path / "legacy")
    settings.LEGACY_IMPORT_ROOTS = [str(tmp_path / "legacy")]
    return tree


def post(client: Any, body: dict[str, Any]) -> Any:
    return client.post(BASE, json.dumps(body), content_type="application/json")


def test_an_import_through_the_api(call_as: Any, tree: LegacyTree) -> None:
    client = call_as("token")
    started = post(client, {"sources": [str(tree.outputs)], "packs": [str(tree.packs)]})
    assert started.status_code == 202
    run_id = started.json()["id"]
    assert started["Location"] == f"{BASE}/{run_id}"
    assert started.json()["sources"] == ["legacy/outputs"]  # relative to the root
    assert run_legacy_import(run_id) == "succeeded"

    summary = client.get(f"{BASE}/{run_id}/summary").json()
    assert summary["images"] == {
        "created": 14,
        "duplicate": 0,
        "near_duplicate": 0,
        "attached": 1,
        "rejected": 2,
        "skipped": 3,
    }
    assert summary["rejected_by_reason"]["a symlink that leaves the source folder"] == 1
    assert len(summary["albums"]["created"]) == 12
    rejected = client.get(f"{BASE}/{run_id}/items?outcome=rejected").json()["items"]
    assert sorted(i["path"] for i in rejected) == [
        "card_deck_antique/broken.png",
        "escape.png",
    ]
    assert {i["source"] for i in rejected} == {"outputs"}
    every = client.get(f"{BASE}/{run_id}/items?limit=200").json()["items"]
    assert len(every) == 20
    listed = client.get(BASE).json()["items"]
    assert [r["id"] for r in listed] == [run_id]
    for text in (started.content, *(r.content for r in [client.get(BASE)])):
        assert str(tree.outputs).encode() not in text
    assert str(tree.outputs) not in json.dumps([summary, every])


def test_folders_outside_the_roots_are_refused_without_echoing_them(
    call_as: Any, tree: LegacyTree, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    refused = post(call_as("token"), {"sources": [str(elsewhere)], "packs": ["/etc"]})
    assert refused.status_code == 422
    assert refused.json()["details"]["errors"] == {
        "sources[0]": "not inside a LEGACY_IMPORT_ROOTS folder",
        "packs[0]": "not inside a LEGACY_IMPORT_ROOTS folder",
    }
    assert str(elsewhere) not in refused.content.decode()
    assert not ImportRun.objects.exists()


def test_without_roots_the_api_refuses(call_as: Any, settings: Any) -> None:
    settings.LEGACY_IMPORT_ROOTS = []
    refused = post(call_as("token"), {"sources": ["/srv/outputs"]})
    assert (refused.status_code, refused.json()["error_code"]) == (
        422,
        "legacy_roots_unset",
    )


def test_staff_only(call_as: Any, tree: LegacyTree) -> None:
    for kind, status in (("anonymous", 401), ("user", 403)):
        assert call_as(kind).get(BASE).status_code == status
        assert post(call_as(kind), {"sources": [str(tree.outputs)]}).status_code == (
            status
        )


def test_a_queued_import_can_be_cancelled_and_continued(
    call_as: Any, tree: LegacyTree, django_capture_on_commit_callbacks: Any
) -> None:
    client = call_as("token")
    run_id = post(client, {"sources": [str(tree.outputs)]}).json()["id"]
    assert client.post(f"{BASE}/{run_id}/cancel").json()["status"] == "cancelled"
    with django_capture_on_commit_callbacks():
        again = client.post(f"{BASE}/{run_id}/retry")
    assert (again.status_code, again.json()["status"]) == (202, "queued")


def test_an_imported_image_shows_where_it_came_from(
    call_as: Any, client: Any, tree: LegacyTree
) -> None:
    from legacy.models import ImportItem

    run_id = post(call_as("token"), {"sources": [str(tree.outputs)]}).json()["id"]
    run_legacy_import(run_id)
    fox = ImportItem.objects.get(relative_path="20240312_101500_a_red_fox.png")

    staff = call_as("token").get(f"/api/images/{fox.image_id}").json()
    visitor = client.get(f"/api/images/{fox.image_id}").json()
    assert staff["provenance"]["path"] == "20240312_101500_a_red_fox.png"
    assert staff["provenance"]["source"] == "outputs"
    assert staff["provenance"]["made_at"] == "2024-03-12T10:15:00+00:00"
    assert staff["provenance"]["sidecar"]["lora"]["weight"] == 0.7
    assert "sidecar" not in visitor["provenance"]  # staff only
    assert visitor["recipe"]["prompt"] == "a red fox in snow"
    page = call_as("staff").get(f"/images/{fox.image_id}/").content.decode()
    assert "Imported from the old system" in page and "a red fox in snow" in page


@pytest.mark.parametrize("given", ["~no-such-user-here/outputs", "out\x00puts"])
def test_a_folder_that_cannot_be_resolved_is_a_clear_422(
    call_as: Any, tree: LegacyTree, given: str
) -> None:
    """Found by bin/apicheck: '~someone' with no such user made expanduser
    raise, and the request ended in a 500."""
    response = post(call_as("token"), {"sources": [given]})
    assert response.status_code == 422
    assert response.json()["details"]["errors"] == {
        "sources[0]": "not inside a LEGACY_IMPORT_ROOTS folder"
    }
