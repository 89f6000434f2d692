from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagineer_project.errors import DomainError
from training.sets.importer import ImportedTemplate, Outcome, set_templates_import

# What a dry run says instead of the outcome.
WOULD = {
    Outcome.CREATED: "would be created",
    Outcome.UPDATED: "would be updated",
    Outcome.SKIPPED: "would be skipped",
    Outcome.FAILED: "failed",
}


class Command(BaseCommand):
    help = (
        "Import set templates from the old system's data/sets/config.yaml and "
        "the CSV files it names (csv_path: next to the YAML or in the folder "
        "above it). The slug comes from the set id (card_deck: card-deck); a "
        "template whose slug exists is skipped unless --replace. Every entry is "
        "checked; a bad one is reported and the others still import."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("config", metavar="CONFIG.yaml", type=Path)
        parser.add_argument(
            "--replace",
            action="store_true",
            help="update templates that exist (built-in ones too) from the file",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="check everything, write nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        try:
            imported = set_templates_import(
                path=options["config"], replace=options["replace"], dry_run=dry_run
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        for entry in imported:
            self._report(entry, dry_run)
        counts = {o: sum(e.outcome == o for e in imported) for o in Outcome}
        totals = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
        self.stdout.write(
            f"{len(imported)} set(s): {totals}"
            + ("; dry run, nothing was written" if dry_run else "")
        )
        failed = [e.key for e in imported if e.outcome == Outcome.FAILED]
        if failed:
            raise CommandError(f"Not imported: {', '.join(failed)} (see above)")

    def _report(self, entry: ImportedTemplate, dry_run: bool) -> None:
        outcome = WOULD[entry.outcome] if dry_run else entry.outcome.value
        head = f"{entry.key} ({entry.slug}): {outcome}"
        if entry.outcome == Outcome.FAILED:
            self.stderr.write(self.style.ERROR(head))
            for name, problem in entry.errors.items():
                self.stderr.write(f"    {name}: {problem}")
        elif entry.outcome == Outcome.SKIPPED:
            self.stdout.write(f"{head}, {entry.note}")
        else:
            self.stdout.write(f"{head}, {entry.slots} slots")
