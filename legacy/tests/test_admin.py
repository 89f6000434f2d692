"""The admin: start an import from LEGACY_IMPORT_ROOTS, follow it, read its
files by outcome, import the same folders again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from legacy.models import ImportRun
from legacy.selectors import import_summary
from legacy.tasks import run_legacy_import
from legacy.tests.builders import LegacyTree, build_legacy_tree

RUNS = "/admin/legacy/importrun/"


@pytest.fixture
def tree(tmp_path: Path, settings: Any) -> LegacyTree:
    tree = build_legacy_tree(tmp_path / "legacy")
    settings.LEGACY_IMPORT_ROOTS = [str(tree.outputs), str(tree.packs)]
    return tree


@pytest.mark.django_db(transaction=True)  # the worker runs it at once, as a fast one
def test_start_follow_and_import_again(admin_client: Any, tree: LegacyTree) -> None:
    form = admin_client.get(f"{RUNS}add/")
    assert form.status_code == 200
    assert str(tree.outputs) in form.content.decode()  # the roots to choose from

    started = admin_client.post(
        f"{RUNS}add/", {"sources": [str(tree.outputs)], "packs": [str(tree.packs)]}
    )
    run = ImportRun.objects.get()
    assert started["Location"] == f"{RUNS}{run.pk}/change/"
    assert run.status == "succeeded"
    page = admin_client.get(started["Location"]).content.decode()
    assert "14 created, 0 near duplicates, 0 duplicates, 1 attached" in page
    assert "Decks/card-deck-antique" in page
    assert "a symlink that leaves the source folder" in page
    assert f"run__id__exact={run.pk}&amp;outcome__exact=rejected" in page
    assert "Import again" in page

    items = admin_client.get(
        f"/admin/legacy/importitem/?run__id__exact={run.pk}&outcome__exact=skipped"
    )
    assert [i.relative_path for i in items.context["cl"].result_list] == [
        "README.md",
        "lost.json",
        "thumbnails/1.png",
    ]

    again = admin_client.post(f"{RUNS}{run.pk}/again/")
    second = ImportRun.objects.exclude(pk=run.pk).get()
    assert again["Location"] == f"{RUNS}{second.pk}/change/"
    assert import_summary(second)["images"]["created"] == 0


@pytest.mark.django_db
def test_the_start_form_refuses_nothing_chosen(admin_client: Any, tree: Any) -> None:
    response = admin_client.post(f"{RUNS}add/", {})
    assert response.status_code == 200
    assert "Name at least one outputs folder" in response.content.decode()
    assert not ImportRun.objects.exists()


@pytest.mark.django_db
def test_without_roots_the_form_says_how(admin_client: Any, settings: Any) -> None:
    settings.LEGACY_IMPORT_ROOTS = []
    page = admin_client.get(f"{RUNS}add/").content.decode()
    assert "set <code>LEGACY_IMPORT_ROOTS</code>" in page


@pytest.mark.django_db
def test_a_queued_import_page(admin_client: Any, tree: LegacyTree) -> None:
    from legacy.services import legacy_import_create

    run = legacy_import_create(sources=[str(tree.outputs)], enqueue=False)
    page = admin_client.get(f"{RUNS}{run.pk}/change/").content.decode()
    assert 'http-equiv="refresh"' in page and "Cancel import" in page
    assert run_legacy_import(run.pk) == "succeeded"


@pytest.mark.django_db
def test_import_again_holds_to_the_roots(
    admin_client: Any, tree: LegacyTree, settings: Any
) -> None:
    """A run the command made from a folder outside LEGACY_IMPORT_ROOTS cannot be
    started again from the admin, whose imports stay inside the roots."""
    from legacy.services import legacy_import_create

    run = legacy_import_create(
        sources=[str(tree.outputs)], roots_only=False, enqueue=False
    )
    settings.LEGACY_IMPORT_ROOTS = [str(tree.packs)]
    again = admin_client.post(f"{RUNS}{run.pk}/again/", follow=True)
    assert ImportRun.objects.count() == 1
    shown = [str(m) for m in again.context["messages"]]
    assert shown == ["sources[0]: not inside a LEGACY_IMPORT_ROOTS folder"]
