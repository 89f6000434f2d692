from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from legacy.selectors import reconcile


class Command(BaseCommand):
    help = (
        "Compare SOURCE with what the legacy imports took from it: image files no "
        "import met, imported files that have since gone or changed, and (for "
        "the record) the files an import refused, with why. Exits with status 1 "
        "when a file is new, gone or changed (for scripts)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", type=Path, metavar="SOURCE")
        parser.add_argument(
            "--pack", action="store_true", help="SOURCE is a folder of image packs"
        )

    def handle(self, *args: Any, source: Path, pack: bool, **options: Any) -> None:
        if not source.is_dir():
            raise CommandError(f"{source} is not a folder.")
        found = reconcile(source, pack=pack)
        labels = {
            "not_imported": "not imported",
            "gone": "gone since imported",
            "changed": "changed since imported",
        }
        for key, label in {**labels, "refused": "refused"}.items():
            for path in found[key]:
                self.stdout.write(f"{label}: {path}")
        total = sum(len(found[key]) for key in labels)
        if total:
            counts = ", ".join(f"{len(found[k])} {labels[k]}" for k in labels)
            raise CommandError(f"{source}: {counts}.", returncode=1)
        self.stdout.write(self.style.SUCCESS(f"{source}: every image file imported."))
