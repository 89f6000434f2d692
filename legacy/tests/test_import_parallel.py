"""A big legacy import spread over chunk sub-tasks: every file finished once,
in any order, delivered twice or after a crash, with exact progress, the same
albums and counts as one process gives, and a cancel that stops it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from albums.models import Album, Image
from imagineer_project.runs import run_chunks, run_claim
from legacy import runs, tasks
from legacy.models import ImportItem, ImportRun
from legacy.selectors import import_summary
from legacy.services import legacy_import_create
from legacy.tasks import import_legacy_chunk, run_legacy_import
from legacy.tests.builders import build_legacy_tree
from legacy.tests.test_import import ALBUMS

pytestmark = pytest.mark.django_db

FILES = 20  # what build_legacy_tree holds: 14 new images and 6 other files
SUMMARY = "14 created, 0 near duplicates, 0 duplicates, 1 attached, 2 rejected"


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: nothing in the body catches it."""


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "CHUNK_MIN_FILES", 3)  # 20 files: 7 chunks


def make_run(tmp_path: Path) -> ImportRun:
    tree = build_legacy_tree(tmp_path / "legacy")
    return legacy_import_create(
        sources=[str(tree.outputs)],
        packs=[str(tree.packs)],
        roots_only=False,
        enqueue=False,
    )


def queued_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImportRun:
    """A run whose body listed its files and queued its chunks (kept here)."""
    run = make_run(tmp_path)
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kw: None)
    assert run_legacy_import(run.pk) == "running"
    run.refresh_from_db()
    assert (run.waiting, run.progress_total) == (True, FILES)
    return run


def chunks() -> list[tuple[int, int]]:
    return run_chunks(FILES, min_size=runs.CHUNK_MIN_FILES)


def assert_imported_once(run: ImportRun) -> None:
    run.refresh_from_db()
    assert run.status == ImportRun.Status.SUCCEEDED, run.error
    assert (run.progress_done, run.progress_total) == (FILES, FILES)
    assert run.message.startswith(SUMMARY)
    assert run.items.count() == FILES
    assert not run.items.filter(outcome="pending").exists()
    assert Image.objects.count() == 14
    assert {a.name: a.images.count() for a in Album.objects.all()} == ALBUMS
    assert set(run.albums.values()) == {"created"} and len(run.albums) == len(ALBUMS)


def test_a_big_import_runs_as_chunk_subtasks_with_what_one_process_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivered: list[tuple[int, int]] = []

    def counted(run_id: int, start: int, stop: int) -> str:
        delivered.append((start, stop))
        return runs.legacy_chunk_execute(run_id, start, stop)

    monkeypatch.setattr(tasks, "import_legacy_chunk", counted)
    run = make_run(tmp_path)

    # Q_SYNC: the chunks run inline as the body queues them.
    assert run_legacy_import(run.pk) == "succeeded"

    assert delivered == chunks() and len(delivered) > 2
    assert_imported_once(run)
    seen = dict(run.items.values_list("relative_path", "outcome"))
    assert seen["lora_tests/aries_again.png"] == "created"
    assert seen["zodiac_night/aries.png"] == "attached"


def test_chunks_in_any_order_and_twice_finish_every_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = queued_run(tmp_path, monkeypatch)

    for start, stop in [*reversed(chunks()), *chunks()]:  # backwards, then again
        import_legacy_chunk(run.pk, start, stop)

    assert_imported_once(run)


def test_a_copy_running_beside_another_finishes_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = queued_run(tmp_path, monkeypatch)
    start, stop = chunks()[0]
    import_legacy_chunk(run.pk, start, stop)
    before = list(run.items.order_by("id").values_list("relative_path", "outcome"))
    # The second copy listed the finished files before the first wrote them.
    monkeypatch.setattr(runs.LegacyImport, "_finished", lambda self: set())

    import_legacy_chunk(run.pk, start, stop)

    run.refresh_from_db()
    assert run.progress_done == stop - start == len(before)
    after = list(run.items.order_by("id").values_list("relative_path", "outcome"))
    assert after == before


def test_a_chunk_killed_mid_file_is_finished_by_the_next_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = queued_run(tmp_path, monkeypatch)
    real_extras = runs.LegacyImport._extras

    def dies(self: Any, *args: Any) -> None:
        raise WorkerKilled  # the image is stored, its item still pending

    monkeypatch.setattr(runs.LegacyImport, "_extras", dies)
    start, stop = chunks()[0]
    with pytest.raises(WorkerKilled):
        import_legacy_chunk(run.pk, start, stop)
    monkeypatch.setattr(runs.LegacyImport, "_extras", real_extras)
    pending = ImportItem.objects.get(run=run, outcome="pending")
    assert Image.objects.count() == 1

    for a, b in chunks():
        import_legacy_chunk(run.pk, a, b)

    assert_imported_once(run)
    pending.refresh_from_db()
    assert pending.outcome == "created"  # its own image, not a duplicate
    assert import_summary(run)["images"]["created"] == 14


def test_cancel_stops_the_chunks_at_their_next_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = queued_run(tmp_path, monkeypatch)
    ImportRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    start, stop = chunks()[0]

    assert import_legacy_chunk(run.pk, start, stop) == "cancelled"

    run.refresh_from_db()
    assert run.status == ImportRun.Status.CANCELLED
    assert (run.items.count(), run.progress_done) == (1, 1)  # the file in hand
    for a, b in chunks()[1:]:
        assert import_legacy_chunk(run.pk, a, b) == "not running"
    assert run.items.count() == 1


def test_the_command_still_imports_in_its_own_process(tmp_path: Path) -> None:
    run = run_claim(ImportRun, make_run(tmp_path).pk)

    runs.legacy_import_execute(run)  # the foreground body: no sub-task

    run.refresh_from_db()
    assert (run.progress_done, run.items.count()) == (FILES, FILES)
    assert not run.waiting
