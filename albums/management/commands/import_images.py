from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from albums.models import Album, NearDuplicates, UploadRun
from albums.runs import CHUNK_MIN_FILES, run_entries, upload_run_execute
from albums.selectors import upload_run_results
from albums.services import album_get_or_create, folder_import_create
from imagineer_project.cli import run_in_foreground
from imagineer_project.errors import DomainError
from imagineer_project.runs import run_chunks


class Command(BaseCommand):
    help = (
        "Import every image under DIR (recursively) into the album NAME, creating it "
        "if needed. A .txt file beside an image becomes its caption. Runs here with "
        "a progress bar (an upload run, resumable; a big folder spread over "
        "--processes worker processes), or with --enqueue hands it to the worker, "
        "which must see the same folder."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dir", type=Path)
        parser.add_argument(
            "--album", required=True, help="album name (created if new)"
        )
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
        parser.add_argument(
            "--near-duplicates",
            choices=NearDuplicates.values,
            default=NearDuplicates.REPLACE_SMALLER,
            help="a file within IMAGINEER_NEAR_DUPLICATE_DISTANCE of a library "
            "image: keep both, skip it, or keep the larger (default "
            "replace_smaller)",
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=None,
            help="processes ingesting in the foreground (default: Q_WORKERS, as "
            "many as the worker's general cluster has)",
        )
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="queue the import for the worker and return",
        )

    def handle(
        self,
        *args: Any,
        dir: Path,
        album: str,
        quiet: bool,
        enqueue: bool,
        near_duplicates: str = NearDuplicates.REPLACE_SMALLER,
        processes: int | None = None,
        **options: Any,
    ) -> None:
        if not dir.expanduser().is_dir():
            raise CommandError(f"{dir} is not a folder.")
        target = album_get_or_create(name=album, source_kind=Album.Kind.UPLOAD)
        try:
            run = folder_import_create(
                folder=dir,
                album=target,
                enqueue=enqueue,
                near_duplicates=near_duplicates,
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        if enqueue:
            self.stdout.write(
                f"Queued folder import #{run.pk}; follow it in the admin."
            )
            return
        workers = processes or settings.Q_CLUSTER.get("workers", 1)
        workers = min(workers, _chunk_count(run))
        with process_pool(workers) as pool:
            if pool is not None:
                self.stdout.write(f"Ingesting in {workers} processes")
            run = run_in_foreground(
                run,
                functools.partial(upload_run_execute, pool=pool),
                stream=self.stderr._out,
                unit="img",
                postfix=lambda r: f"{r.progress_done} done",
                quiet=quiet,
            )
        self._report(run, target)

    def _report(self, run: UploadRun, album: Album) -> None:
        results = upload_run_results(run)
        for result in results:
            if result["status"] == "rejected":
                self.stderr.write(f"rejected {result['filename']}: {result['reason']}")
            for warning in result.get("warnings", ()):
                self.stderr.write(
                    f"{warning['code']} {result['filename']}: {warning['message']}"
                )
        if run.status != UploadRun.Status.SUCCEEDED:
            raise CommandError(f"Folder import #{run.pk} {run.status}: {run.error}")
        near = sum(
            any(w["code"] == "near_duplicate" for w in r.get("warnings", ()))
            for r in results
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Album '{album.name}' (/albums/{album.slug}/): "
                f"{run.created_count} new, {run.duplicate_count} already known, "
                f"{run.rejected_count} rejected, "
                f"{run.sidecar_count} caption(s) from .txt files"
                + (
                    f"; {near} near duplicate(s) of library images "
                    f"({run.near_duplicates})."
                    if near
                    else "."
                )
            )
        )


def _chunk_count(run: UploadRun) -> int:
    return len(run_chunks(len(run_entries(run)), min_size=CHUNK_MIN_FILES))


@contextlib.contextmanager
def process_pool(processes: int) -> Iterator[Any]:
    """A pool of `processes` forked processes for the run's chunks, or None
    (ingest here) for one. Forked before the run's heartbeat thread starts,
    from a process with no other thread (a fork copies only the calling
    thread, and a lock another one held would stay held in the child), with
    no database connection to share: each child opens its own."""
    if processes < 2 or threading.active_count() > 1:
        yield None
        return
    connections.close_all()
    pool = get_context("fork").Pool(processes, initializer=connections.close_all)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()
