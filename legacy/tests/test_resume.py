"""An import whose worker dies goes on where it stopped: no file twice, no
duplicate rows, and the image it was storing when it died counts as created."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from albums.models import Album, Image
from imagineer_project.runs import reap_stale_runs, run_claim
from legacy import runs
from legacy.models import ImportItem, ImportRun
from legacy.selectors import import_summary
from legacy.services import legacy_import_create
from legacy.tasks import run_legacy_import
from legacy.tests.builders import build_legacy_tree

pytestmark = pytest.mark.django_db


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: nothing in the body catches it."""


def test_a_killed_import_resumes_without_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    tree = build_legacy_tree(tmp_path / "legacy")
    run = legacy_import_create(
        sources=[str(tree.outputs)],
        packs=[str(tree.packs)],
        roots_only=False,
        enqueue=False,
    )
    calls = {"n": 0}
    real_extras = runs.LegacyImport._extras

    def dies_on_the_fifth_image(self: Any, *args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 5:  # the image is stored, its item still pending
            raise WorkerKilled
        real_extras(self, *args)

    monkeypatch.setattr(runs.LegacyImport, "_extras", dies_on_the_fifth_image)
    claimed = run_claim(ImportRun, run.pk)
    with pytest.raises(WorkerKilled):
        runs.legacy_import_execute(claimed)
    monkeypatch.setattr(runs.LegacyImport, "_extras", real_extras)
    pending = ImportItem.objects.get(run=run, outcome="pending")
    assert pending.image is None and Image.objects.count() == 5

    # The worker is gone: its heartbeat goes stale, the reaper queues it again.
    long_ago = timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS + 1)
    ImportRun.objects.filter(pk=run.pk).update(heartbeat_at=long_ago)
    assert reap_stale_runs()["requeued"] == 1
    assert run_legacy_import(run.pk) == "succeeded"

    run.refresh_from_db()
    assert run.attempts == 2
    assert import_summary(run)["images"]["created"] == 14  # the one in flight included
    assert run.items.count() == 20  # every file once
    assert not run.items.filter(outcome="pending").exists()
    pending.refresh_from_db()
    assert (pending.outcome, pending.image is not None) == ("created", True)
    assert Image.objects.count() == 14
    assert Album.objects.count() == 12
