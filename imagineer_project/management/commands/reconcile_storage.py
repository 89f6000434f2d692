"""`manage.py reconcile_storage [--dry-run] [--grace-hours N]`: the
reconcile-storage pass now, with its own grace period if given."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagineer_project.management.commands.maintenance import run_pass


def _hours(text: str) -> int:
    hours = int(text)
    if hours < 0:
        raise ValueError(text)
    return hours


class Command(BaseCommand):
    help = (
        "Delete stored files no row references (older than the grace period) "
        "and report rows whose file is missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="report only; delete nothing"
        )
        parser.add_argument(
            "--grace-hours",
            type=_hours,
            default=None,
            metavar="N",
            help="keep orphans younger than N hours "
            "(default: STORAGE_ORPHAN_GRACE_HOURS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        grace = options["grace_hours"]
        ok = run_pass(
            self,
            "reconcile-storage",
            dry_run=options["dry_run"],
            options={"grace_hours": grace} if grace is not None else None,
            quiet=options["verbosity"] < 1,
        )
        if not ok:
            raise CommandError("reconcile-storage did not succeed.")
