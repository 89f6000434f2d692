"""Bug reports from the shell: list, show, resolve and purge
(docs/bug-reports.md)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from imagineer_project.bug_reports import selectors, services
from imagineer_project.errors import DomainError
from imagineer_project.models import BugReport


def _when(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "-"


class Command(BaseCommand):
    help = "Bug reports: list [--status S], show ID, resolve ID [--note], purge."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="reports, newest first")
        listing.add_argument("--status", help=", ".join(BugReport.Status.values))
        listing.add_argument("--limit", type=int, default=50)
        sub.add_parser("show", help="one report in full").add_argument("id", type=int)
        resolve = sub.add_parser("resolve", help="mark a report resolved")
        resolve.add_argument("id", type=int)
        resolve.add_argument("--note", default="", help="added to the timeline")
        purge = sub.add_parser("purge", help="remove long-closed reports")
        purge.add_argument(
            "--older-than",
            type=int,
            default=None,
            metavar="DAYS",
            help="closed more than DAYS ago (default BUG_REPORT_RETENTION_DAYS)",
        )
        purge.add_argument("--dry-run", action="store_true", help="only list them")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except DomainError as exc:
            raise CommandError(exc.message) from exc

    def _list(self, options: dict[str, Any]) -> None:
        reports = selectors.bug_reports(status=options["status"]).order_by("-id")
        rows = list(reports[: options["limit"]])
        if not rows:
            self.stdout.write("No bug reports.")
        for r in rows:
            first = r.description.splitlines()[0][:70] if r.description else ""
            who = r.reporter.get_username() if r.reporter else "-"
            self.stdout.write(f"#{r.pk} {_when(r.created)} {r.status} {who}: {first}")

    def _show(self, options: dict[str, Any]) -> None:
        r = self._report(options["id"])
        self.stdout.write(f"Bug report #{r.pk}: {r.status}")
        for label, value in [
            ("reporter", r.reporter.get_username() if r.reporter else "-"),
            ("assignee", r.assignee.get_username() if r.assignee else "-"),
            ("filed", _when(r.created)),
            ("closed", _when(r.closed_at)),
            ("page", r.page_url or "-"),
            ("trace", r.trace_id or "-"),
            ("failing trace", r.failing_trace_id or "-"),
            ("version", f"{r.app_version} ({r.environment})"),
            ("user agent", r.user_agent or "-"),
        ]:
            self.stdout.write(f"{label}: {value}")
        self.stdout.write(f"\n{r.description}\n")
        self.stdout.write(f"context: {json.dumps(r.context, sort_keys=True)}")
        self.stdout.write(f"log lines ({len(r.log_records)}):")
        for line in r.log_records:
            self.stdout.write(
                f"  {line.get('time')} {line.get('level')} {line.get('logger')}: "
                f"{line.get('message')}"
            )
        self.stdout.write("timeline:")
        for e in r.events.all():
            who = e.author.get_username() if e.author else "-"
            what = {
                "status": f"{e.from_status} -> {e.to_status}",
                "filed": e.to_status,
            }.get(e.kind, e.text)
            self.stdout.write(f"  {_when(e.created)} {who} {e.kind} {what}".rstrip())

    def _resolve(self, options: dict[str, Any]) -> None:
        report = self._report(options["id"])
        services.bug_report_update(
            report=report,
            actor=None,
            status=BugReport.Status.RESOLVED,
            note=options["note"],
        )
        self.stdout.write(f"Bug report #{report.pk} resolved.")

    def _purge(self, options: dict[str, Any]) -> None:
        days = options["older_than"]
        if days is None:
            days = settings.BUG_REPORT_RETENTION_DAYS
        dry_run = options["dry_run"]
        result = services.bug_reports_purge(older_than_days=days, dry_run=dry_run)
        verb = "Would remove" if dry_run else "Removed"
        ids = ", ".join(f"#{i}" for i in result.ids) or "none"
        self.stdout.write(
            f"{verb} {result.count} report(s) closed over {days} days ago: {ids}"
        )

    def _report(self, report_id: int) -> BugReport:
        return selectors.bug_report_get(report_id)
