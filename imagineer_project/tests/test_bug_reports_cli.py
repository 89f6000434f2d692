"""`manage.py bug_reports`: list, show, resolve, purge."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from imagineer_project.bug_reports.services import bug_report_file, bug_report_update
from imagineer_project.models import BugReport
from imagineer_project.testing import make_user

pytestmark = pytest.mark.django_db
Status = BugReport.Status


@pytest.fixture(autouse=True)
def _fresh(fresh_cache: None) -> None:
    """Each test starts with an empty cache and log store."""


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("bug_reports", *args, stdout=out)
    return out.getvalue()


def make_report(**overrides: Any) -> BugReport:
    fields = {"reporter": None, "description": "The gallery is blank."} | overrides
    return bug_report_file(**fields)


def test_list_newest_first_and_by_status() -> None:
    reporter = make_user(username="ann")
    first = make_report(reporter=reporter, description="Crop freezes\nsecond line")
    second = make_report(description="Upload hangs")
    bug_report_update(report=second, actor=None, status=Status.TRIAGED)

    lines = run("list").splitlines()
    assert [line.split()[0] for line in lines] == [f"#{second.pk}", f"#{first.pk}"]
    assert lines[1].endswith("open ann: Crop freezes")
    assert (
        run("list", "--status", "triaged")
        .splitlines()[0]
        .endswith("triaged -: Upload hangs")
    )
    assert run("list", "--status", "resolved") == "No bug reports.\n"


def test_show_prints_the_report_its_log_lines_and_timeline() -> None:
    report = make_report(page_url="/albums/a/", context={"tab": "labels"})
    BugReport.objects.filter(pk=report.pk).update(
        log_records=[
            {
                "time": "2026-01-02T03:04:05+00:00",
                "level": "ERROR",
                "logger": "albums.views",
                "message": "boom",
            }
        ]
    )
    text = run("show", str(report.pk))
    assert text.startswith(f"Bug report #{report.pk}: open\n")
    assert "page: /albums/a/" in text
    assert '"tab": "labels"' in text
    assert "2026-01-02T03:04:05+00:00 ERROR albums.views: boom" in text
    assert " - filed open" in text


def test_resolve_with_a_note() -> None:
    report = make_report()
    assert run("resolve", str(report.pk), "--note", "Fixed in 1.4") == (
        f"Bug report #{report.pk} resolved.\n"
    )
    report.refresh_from_db()
    assert report.status == Status.RESOLVED
    assert [e.kind for e in report.events.all()] == ["filed", "status", "note"]
    assert report.events.last().text == "Fixed in 1.4"


def test_purge_dry_run_then_for_real(settings: Any) -> None:
    settings.BUG_REPORT_RETENTION_DAYS = 30
    keep_open = make_report()
    BugReport.objects.filter(pk=keep_open.pk).update(
        created=timezone.now() - timedelta(days=400)
    )
    old = make_report()
    BugReport.objects.filter(pk=old.pk).update(
        status=Status.RESOLVED, closed_at=timezone.now() - timedelta(days=40)
    )

    assert run("purge", "--dry-run") == (
        f"Would remove 1 report(s) closed over 30 days ago: #{old.pk}\n"
    )
    assert BugReport.objects.count() == 2
    assert run("purge", "--older-than", "50") == (
        "Removed 0 report(s) closed over 50 days ago: none\n"
    )
    assert run("purge") == f"Removed 1 report(s) closed over 30 days ago: #{old.pk}\n"
    assert list(BugReport.objects.values_list("pk", flat=True)) == [keep_open.pk]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "999"), "Bug report 999 not found."),
        (("resolve", "999"), "Bug report 999 not found."),
        (("list", "--status", "done"), "status: one of open, triaged"),
    ],
)
def test_unknown_ids_and_statuses_are_clear_errors(args: tuple, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_resolving_a_closed_report_the_flow_refuses_is_an_error() -> None:
    report = make_report()
    BugReport.objects.filter(pk=report.pk).update(status=Status.WONT_FIX)
    with pytest.raises(CommandError, match="cannot become resolved"):
        run("resolve", str(report.pk))
