"""Triage in the admin: the changelist (filters, search), each bulk action,
and the change page with the context, the log lines and the timeline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from imagineer_project.bug_reports.services import bug_report_file, bug_report_update
from imagineer_project.models import BugReport
from imagineer_project.testing import admin_listed, make_user

pytestmark = pytest.mark.django_db
Status = BugReport.Status
REPORTS = "/admin/imagineer/bugreport/"


@pytest.fixture(autouse=True)
def _fresh(fresh_cache: None) -> None:
    """Each test starts with an empty cache and log store."""


def make_report(**overrides: Any) -> BugReport:
    fields = {"reporter": None, "description": "The gallery is blank."} | overrides
    return bug_report_file(**fields)


def act(client: Any, action: str, reports: list[BugReport]) -> Any:
    data = {"action": action, "_selected_action": [r.pk for r in reports], "index": 0}
    return client.post(REPORTS, data, follow=True)


def test_the_changelist_shows_reports_with_their_people(admin_client: Any) -> None:
    reporter = make_user(username="reporter")
    report = make_report(reporter=reporter, description="Upload hangs at 99%")
    response = admin_client.get(REPORTS)
    assert admin_listed(response) == [report.pk]
    assert "Upload hangs at 99%" in response.text
    assert "reporter" in response.text
    assert admin_client.get(f"{REPORTS}add/").status_code == 403


def test_filters_by_status_age_assignee_and_environment(
    admin_client: Any, admin_user: Any
) -> None:
    fresh = make_report()
    old = make_report()
    BugReport.objects.filter(pk=old.pk).update(
        created=timezone.now() - timedelta(days=45), environment="staging"
    )
    bug_report_update(
        report=fresh, actor=admin_user, status=Status.TRIAGED, assignee=admin_user
    )

    assert admin_listed(admin_client.get(f"{REPORTS}?status=triaged")) == [fresh.pk]
    assert admin_listed(admin_client.get(f"{REPORTS}?age=today")) == [fresh.pk]
    assert admin_listed(admin_client.get(f"{REPORTS}?age=7d")) == [fresh.pk]
    assert admin_listed(admin_client.get(f"{REPORTS}?age=older")) == [old.pk]
    assigned = admin_client.get(f"{REPORTS}?assignee__id__exact={admin_user.pk}")
    assert admin_listed(assigned) == [fresh.pk]
    staging = admin_client.get(f"{REPORTS}?environment=staging")
    assert admin_listed(staging) == [old.pk]


def test_search_finds_description_trace_ids_and_page(admin_client: Any) -> None:
    by_text = make_report(description="Crop tool freezes")
    by_trace = make_report(failing_trace_id="trace-feedbeef")
    by_page = make_report(page_url="/albums/holiday-2024/")

    def found(term: str) -> list[int]:
        return admin_listed(admin_client.get(REPORTS, {"q": term}))

    assert found("crop tool") == [by_text.pk]
    assert found("trace-feedbeef") == [by_trace.pk]
    assert found("holiday-2024") == [by_page.pk]


def test_bulk_triage(admin_client: Any, admin_user: Any) -> None:
    reports = [make_report(), make_report()]
    response = act(admin_client, "triage", reports)
    assert "2 report(s) triaged." in response.text
    for report in reports:
        report.refresh_from_db()
        assert report.status == Status.TRIAGED
        assert report.events.last().author == admin_user


def test_bulk_resolve_names_the_reports_it_could_not_move(admin_client: Any) -> None:
    open_one, closed = make_report(), make_report()
    BugReport.objects.filter(pk=closed.pk).update(status=Status.WONT_FIX)

    response = act(admin_client, "resolve", [open_one, closed])

    assert "1 report(s) resolved." in response.text
    assert f"Bug report #{closed.pk} is wont_fix" in response.text
    open_one.refresh_from_db()
    assert (open_one.status, bool(open_one.closed_at)) == (Status.RESOLVED, True)
    assert BugReport.objects.get(pk=closed.pk).status == Status.WONT_FIX


def test_bulk_wont_fix(admin_client: Any) -> None:
    report = make_report()
    act(admin_client, "wont_fix", [report])
    report.refresh_from_db()
    assert report.status == Status.WONT_FIX
    assert report.closed_at is not None


def test_bulk_assign_to_me(admin_client: Any, admin_user: Any) -> None:
    report = make_report()
    act(admin_client, "assign_to_me", [report])
    report.refresh_from_db()
    assert report.assignee == admin_user
    event = report.events.last()
    assert (event.kind, event.author, event.text) == (
        "assigned",
        admin_user,
        admin_user.username,
    )


def test_the_change_page_shows_context_log_lines_and_timeline(
    admin_client: Any,
) -> None:
    report = make_report(context={"tab": "labels", "album": 3})
    BugReport.objects.filter(pk=report.pk).update(
        log_records=[
            {
                "time": "2026-01-02T03:04:05.000+00:00",
                "level": "ERROR",
                "logger": "albums.views",
                "message": "Thumbnail <failed> for image 9",
            }
        ]
    )

    page = admin_client.get(f"{REPORTS}{report.pk}/change/")

    assert page.status_code == 200
    assert "albums.views" in page.text
    assert "Thumbnail &lt;failed&gt; for image 9" in page.text
    assert "2026-01-02T03:04:05.000+00:00" in page.text
    assert "&quot;tab&quot;: &quot;labels&quot;" in page.text
    assert "Filed" in page.text


def test_the_change_form_moves_assigns_and_notes_through_the_service(
    admin_client: Any, admin_user: Any
) -> None:
    report = make_report()
    response = admin_client.post(
        f"{REPORTS}{report.pk}/change/",
        {"status": "in_progress", "assignee": admin_user.pk, "note": "Looking"},
    )
    assert response.status_code == 302
    report.refresh_from_db()
    assert (report.status, report.assignee) == (Status.IN_PROGRESS, admin_user)
    kinds = [(e.kind, e.author) for e in report.events.all()[1:]]
    assert kinds == [
        ("status", admin_user),
        ("assigned", admin_user),
        ("note", admin_user),
    ]


def test_the_change_form_offers_only_allowed_moves(admin_client: Any) -> None:
    report = make_report()
    BugReport.objects.filter(pk=report.pk).update(status=Status.RESOLVED)
    response = admin_client.post(
        f"{REPORTS}{report.pk}/change/", {"status": "wont_fix", "assignee": ""}
    )
    assert response.status_code == 200  # the form again, with the error
    assert BugReport.objects.get(pk=report.pk).status == Status.RESOLVED
