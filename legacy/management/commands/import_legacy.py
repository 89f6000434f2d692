from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagineer_project.cli import run_in_foreground
from imagineer_project.errors import DomainError
from legacy.models import ImportRun
from legacy.runs import legacy_import_execute
from legacy.selectors import import_summary, summary_line
from legacy.services import legacy_import_create


class Command(BaseCommand):
    help = (
        "Import the old system's outputs folders (SOURCE: singles, decks, zodiac "
        "sets, LoRA tests, batches, with their .json sidecars) and image packs "
        "(--packs DIR: folders of images with .txt captions) into albums. Runs "
        "here with a progress bar, or with --enqueue on the worker (which must "
        "see the same folders). Running it again creates nothing new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("sources", nargs="*", type=Path, metavar="SOURCE")
        parser.add_argument(
            "--packs",
            action="append",
            type=Path,
            default=[],
            metavar="DIR",
            help="a folder of image packs (repeatable)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="walk and classify only; show the albums it would create",
        )
        parser.add_argument(
            "--enqueue", action="store_true", help="queue it for the worker and return"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = legacy_import_create(
                sources=[str(p) for p in options["sources"]],
                packs=[str(p) for p in options["packs"]],
                dry_run=options["dry_run"],
                roots_only=False,
                enqueue=options["enqueue"],
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        if options["enqueue"]:
            self.stdout.write(f"Queued {run}; `manage.py legacy_imports {run.pk}`.")
            return
        run = run_in_foreground(
            run, legacy_import_execute, stream=self.stderr._out, unit="file"
        )
        self._report(run)

    def _report(self, run: ImportRun) -> None:
        summary = import_summary(run)
        albums = summary["albums"]
        for what in ("created", "would create", "reused", "exists"):
            for name in albums.get(what, []):
                self.stdout.write(f"album {what}: {name}")
        if run.status != ImportRun.Status.SUCCEEDED:
            raise CommandError(f"{run}: {run.error or run.message}")
        self.stdout.write(self.style.SUCCESS(f"#{run.pk}: {summary_line(summary)}"))
        self.stdout.write(
            f"Details: `manage.py legacy_imports {run.pk}` or /admin/legacy/importrun/"
            f"{run.pk}/change/"
        )
