from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from legacy.models import ImportItem, ImportRun
from legacy.selectors import (
    IMAGE_OUTCOMES,
    import_runs,
    import_summary,
    outcome_counts,
)


class Command(BaseCommand):
    help = (
        "The legacy imports, one line each, newest first; with ID, that import's "
        "summary and every file it did not create (with why)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id", nargs="?", type=int)
        parser.add_argument("--limit", type=int, default=50, help="lines of history")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["id"] is None:
            self._history(options["limit"])
        else:
            self._detail(options["id"])

    def _history(self, limit: int) -> None:
        runs = list(import_runs().order_by("-id")[:limit])
        if not runs:
            self.stdout.write("No legacy imports yet.")
        counts = outcome_counts(runs)
        for run in runs:
            tally = ", ".join(f"{counts[run.pk][o]} {o}" for o in IMAGE_OUTCOMES)
            when = run.created.strftime("%Y-%m-%d %H:%M")
            kind = "dry run" if run.dry_run else "import"
            self.stdout.write(f"#{run.pk} {when} {kind} {run.status}: {tally}")

    def _detail(self, run_id: int) -> None:
        run = ImportRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"No legacy import {run_id}.")
        summary = import_summary(run)
        self.stdout.write(f"{run}: {run.message}")
        for folder in [*run.sources, *run.packs]:
            self.stdout.write(f"folder: {folder}")
        for what, names in summary["albums"].items():
            self.stdout.write(f"albums {what}: {', '.join(names)}")
        images = ", ".join(f"{n} {o}" for o, n in summary["images"].items())
        self.stdout.write(f"images: {images}")
        sidecars = ", ".join(f"{n} {s}" for s, n in summary["sidecars"].items())
        self.stdout.write(f"sidecars: {sidecars}")
        self.stdout.write(f"bytes: {summary['bytes']:,}; seconds: {summary['seconds']}")
        others = run.items.exclude(outcome=ImportItem.Outcome.CREATED)
        for item in others.order_by("id"):
            why = f": {item.reason}" if item.reason else ""
            self.stdout.write(f"{item.outcome}  {item.relative_path}{why}")
