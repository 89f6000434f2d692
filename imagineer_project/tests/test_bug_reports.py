"""Bug reports: filing from the API and the pages (with the failing request's
log lines), the status flow and its timeline, purging, and the staff API."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from django.utils import timezone

from imagineer_project.bug_reports.services import (
    bug_report_file,
    bug_report_update,
    bug_reports_purge,
)
from imagineer_project.errors import Conflict, Invalid
from imagineer_project.logcapture import STORE
from imagineer_project.maintenance.registry import PASSES, PassReport
from imagineer_project.models import BugReport, BugReportEvent
from imagineer_project.testing import make_user
from imagineer_project.urls import urlpatterns as site_urlpatterns

pytestmark = pytest.mark.django_db
Status = BugReport.Status
log = logging.getLogger("imagineer_project.tests.failing_view")


def failing_view(request: HttpRequest) -> HttpResponse:
    log.warning("about to look up album %s", 42)
    raise RuntimeError("the album index is corrupt")


# This module is also the URL conf of the tests that need a page that fails.
urlpatterns = [path("boom/", failing_view), *site_urlpatterns]
handler404 = "imagineer_project.views.not_found"
handler500 = "imagineer_project.views.server_error"
with_failing_page = pytest.mark.urls(__name__)


@pytest.fixture(autouse=True)
def _fresh(fresh_cache: None) -> None:
    """Each test starts with an empty cache and log store."""


def post_json(client: Client, url: str, body: Any, **extra: Any) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json", **extra)


def patch_json(client: Client, url: str, body: Any) -> Any:
    return client.patch(url, json.dumps(body), content_type="application/json")


def make_report(**overrides: Any) -> BugReport:
    fields = {"reporter": None, "description": "The gallery is blank."} | overrides
    return bug_report_file(**fields)


def closed_days_ago(report: BugReport, status: str, days: int) -> BugReport:
    BugReport.objects.filter(pk=report.pk).update(
        status=status, closed_at=timezone.now() - timedelta(days=days)
    )
    report.refresh_from_db()
    return report


# --- filing ---------------------------------------------------------------------


@with_failing_page
def test_a_report_with_a_failed_request_s_trace_id_holds_its_log_lines(
    user_client: Client, plain_user: Any
) -> None:
    browser = Client(raise_request_exception=False)
    failed = browser.get("/boom/")
    assert failed.status_code == 500
    failing_trace = failed["X-Trace-Id"]
    STORE.clear()  # filed through another web process: only the cache has them

    response = post_json(
        user_client,
        "/api/bug-reports",
        {"description": "The album page crashed.", "trace_id": failing_trace},
        HTTP_USER_AGENT="Firefox/140",
        HTTP_REFERER="http://testserver/albums/holiday/",
    )

    assert response.status_code == 201
    report = BugReport.objects.get()
    assert response.json() == {
        "id": report.pk,
        "status": "open",
        "trace_id": report.trace_id,
        "failing_trace_id": failing_trace,
    }
    assert report.trace_id == response["X-Trace-Id"] != failing_trace
    assert report.reporter == plain_user
    assert report.page_url == "http://testserver/albums/holiday/"
    assert report.user_agent == "Firefox/140"
    assert report.app_version and report.environment
    lines = [(r["level"], r["logger"], r["message"]) for r in report.log_records]
    assert (
        "WARNING",
        "imagineer_project.tests.failing_view",
        "about to look up album 42",
    ) in lines
    error = next(r for r in report.log_records if r["level"] == "ERROR")
    assert "RuntimeError: the album index is corrupt" in error["message"]


def test_a_report_keeps_the_page_and_context_it_was_given(
    user_client: Client,
) -> None:
    response = post_json(
        user_client,
        "/api/bug-reports",
        {"description": "Odd", "page_url": "/albums/x/", "context": {"tab": "labels"}},
    )
    assert response.status_code == 201
    report = BugReport.objects.get()
    assert report.page_url == "/albums/x/"
    assert report.context == {"tab": "labels"}
    assert report.failing_trace_id == ""


def test_an_anonymous_caller_gets_401_in_the_error_shape(client: Client) -> None:
    response = post_json(client, "/api/bug-reports", {"description": "x"})
    assert response.status_code == 401
    body = response.json()
    assert body["error_code"] == "unauthorized"
    assert body["trace_id"] == response["X-Trace-Id"]
    assert not BugReport.objects.exists()


def test_a_session_write_without_csrf_is_refused(plain_user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(plain_user)
    response = post_json(client, "/api/bug-reports", {"description": "x"})
    assert response.status_code == 403


def test_a_non_staff_user_files_by_token_but_cannot_use_the_staff_api(
    plain_user: Any,
) -> None:
    from imagineer_project.tokens import api_token_create

    token = api_token_create(user=plain_user)[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert (
        post_json(client, "/api/bug-reports", {"description": "x"}).status_code == 201
    )
    report = BugReport.objects.get()

    assert client.get("/api/admin/bug-reports").status_code == 403
    assert client.get(f"/api/admin/bug-reports/{report.pk}").status_code == 403
    assert (
        patch_json(
            client, f"/api/admin/bug-reports/{report.pk}", {"status": "resolved"}
        ).status_code
        == 403
    )
    assert client.delete(f"/api/admin/bug-reports/{report.pk}").status_code == 403
    purge = post_json(client, "/api/admin/bug-reports/purge", {"older_than_days": 0})
    assert purge.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"description": "   "}, "description"),
        ({"description": "x" * 10_001}, "description"),
        ({"description": "x", "context": [1, 2]}, "context"),
        ({"description": "x", "context": {"blob": "y" * 70_000}}, "context"),
        ({"description": "x", "trace_id": "not a trace!"}, "trace_id"),
    ],
)
def test_bad_input_is_a_422(user_client: Client, body: dict, field: str) -> None:
    response = post_json(user_client, "/api/bug-reports", body)
    assert response.status_code == 422
    assert field in json.dumps(response.json()["details"])
    assert not BugReport.objects.exists()


def test_filing_is_rate_limited_per_user(settings: Any, call_as: Any) -> None:
    settings.BUG_REPORT_RATE_LIMIT = "2/hour"
    user, staff = call_as("user"), call_as("staff")
    for _ in range(2):
        response = post_json(user, "/api/bug-reports", {"description": "x"})
        assert response.status_code == 201

    refused = post_json(user, "/api/bug-reports", {"description": "x"})
    assert refused.status_code == 429
    assert refused.json()["error_code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 3600  # a fixed window's end
    # Another user is counted on their own.
    response = post_json(staff, "/api/bug-reports", {"description": "x"})
    assert response.status_code == 201
    assert BugReport.objects.count() == 3


# --- the status flow --------------------------------------------------------------


def test_the_status_flow_records_each_change_with_its_author(staff_user: Any) -> None:
    report = make_report()
    other = make_user(username="other-staff", staff=True)

    bug_report_update(report=report, actor=staff_user, status=Status.TRIAGED)
    bug_report_update(
        report=report, actor=staff_user, status=Status.IN_PROGRESS, assignee=other
    )
    bug_report_update(report=report, actor=other, status=Status.RESOLVED, note="Fixed")

    report.refresh_from_db()
    assert report.status == Status.RESOLVED
    assert report.assignee == other
    assert report.closed_at is not None
    timeline = [
        (e.kind, e.author and e.author.username, e.from_status, e.to_status, e.text)
        for e in report.events.all()
    ]
    assert timeline == [
        ("filed", None, "", "open", ""),
        ("status", "staff", "open", "triaged", ""),
        ("status", "staff", "triaged", "in_progress", ""),
        ("assigned", "staff", "", "", "other-staff"),
        ("status", "other-staff", "in_progress", "resolved", ""),
        ("note", "other-staff", "", "", "Fixed"),
    ]


def test_an_open_report_can_be_resolved_at_once_and_re_opened(staff_user: Any) -> None:
    report = make_report()
    bug_report_update(report=report, actor=staff_user, status=Status.RESOLVED)
    assert report.closed_at is not None

    bug_report_update(report=report, actor=staff_user, status=Status.OPEN)
    report.refresh_from_db()
    assert (report.status, report.closed_at) == (Status.OPEN, None)


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (Status.IN_PROGRESS, Status.TRIAGED),
        (Status.RESOLVED, Status.WONT_FIX),
        (Status.WONT_FIX, Status.IN_PROGRESS),
    ],
)
def test_moves_the_flow_does_not_allow_are_refused(
    staff_user: Any, start: str, to: str
) -> None:
    report = make_report()
    BugReport.objects.filter(pk=report.pk).update(status=start)
    report.refresh_from_db()
    with pytest.raises(Conflict):
        bug_report_update(report=report, actor=staff_user, status=to)
    assert BugReport.objects.get(pk=report.pk).status == start
    assert report.events.count() == 1  # filed only


def test_a_change_made_meanwhile_wins_over_a_stale_one(staff_user: Any) -> None:
    report = make_report()
    stale = BugReport.objects.get(pk=report.pk)
    bug_report_update(report=report, actor=staff_user, status=Status.WONT_FIX)
    with pytest.raises(Conflict):
        bug_report_update(report=stale, actor=staff_user, status=Status.RESOLVED)
    assert BugReport.objects.get(pk=report.pk).status == Status.WONT_FIX


def test_only_active_staff_can_be_assigned(staff_user: Any, plain_user: Any) -> None:
    report = make_report()
    with pytest.raises(Invalid):
        bug_report_update(report=report, actor=staff_user, assignee=plain_user)


# --- retention --------------------------------------------------------------------


def reports_of_every_kind() -> dict[str, BugReport]:
    """Open, triaged and in-progress reports filed long ago, closed ones
    closed long ago and recently."""
    reports = {}
    for status in (Status.OPEN, Status.TRIAGED, Status.IN_PROGRESS):
        report = make_report(description=status)
        BugReport.objects.filter(pk=report.pk).update(
            status=status, created=timezone.now() - timedelta(days=400)
        )
        reports[status] = report
    reports["old resolved"] = closed_days_ago(make_report(), Status.RESOLVED, 31)
    reports["old wont_fix"] = closed_days_ago(make_report(), Status.WONT_FIX, 90)
    reports["new resolved"] = closed_days_ago(make_report(), Status.RESOLVED, 29)
    return reports


def test_purge_removes_only_long_closed_reports() -> None:
    reports = reports_of_every_kind()
    old = sorted([reports["old resolved"].pk, reports["old wont_fix"].pk])

    result = bug_reports_purge(older_than_days=30, dry_run=False)

    assert (result.count, result.ids) == (2, old)
    kept = set(BugReport.objects.values_list("description", "status"))
    assert {status for _, status in kept} == {
        "open",
        "triaged",
        "in_progress",
        "resolved",
    }
    assert not BugReportEvent.objects.filter(report_id__in=old).exists()


def test_a_dry_run_purge_removes_nothing() -> None:
    reports = reports_of_every_kind()
    result = bug_reports_purge(older_than_days=30, dry_run=True)
    assert result.count == 2
    assert BugReport.objects.count() == len(reports)


def test_the_maintenance_pass_reports_in_a_dry_run_and_purges_for_real(
    settings: Any,
) -> None:
    settings.BUG_REPORT_RETENTION_DAYS = 30
    reports = reports_of_every_kind()
    old = sorted([reports["old resolved"].pk, reports["old wont_fix"].pk])
    run = PASSES["purge-bug-reports"]
    assert run.minutes == 1440

    dry = PassReport(dry_run=True)
    run.func(dry)
    assert dry.items_removed == 2
    assert [r["name"] for r in dry.removed] == [f"#{pk}" for pk in old]
    assert {r["what"] for r in dry.removed} == {"bug report"}
    assert BugReport.objects.count() == 6

    real = PassReport(dry_run=False)
    run.func(real)
    assert real.items_removed == 2
    assert BugReport.objects.count() == 4
    assert not BugReport.objects.filter(pk__in=old).exists()


# --- the staff API ----------------------------------------------------------------


def test_staff_list_by_status_keyset_paginated(staff_client: Client) -> None:
    reports = [make_report(description=f"r{n}") for n in range(3)]
    bug_report_update(report=reports[1], actor=None, status=Status.TRIAGED)

    first = staff_client.get("/api/admin/bug-reports?limit=2").json()
    assert [r["id"] for r in first["items"]] == [reports[2].pk, reports[1].pk]
    rest = staff_client.get(
        f"/api/admin/bug-reports?limit=2&cursor={first['next_cursor']}"
    ).json()
    assert ([r["id"] for r in rest["items"]], rest["next_cursor"]) == (
        [reports[0].pk],
        None,
    )
    triaged = staff_client.get("/api/admin/bug-reports?status=triaged").json()
    assert [r["id"] for r in triaged["items"]] == [reports[1].pk]
    assert staff_client.get("/api/admin/bug-reports?status=bogus").status_code == 422


def test_staff_detail_update_and_delete(staff_client: Client, staff_user: Any) -> None:
    report = make_report(context={"album": 3})
    url = f"/api/admin/bug-reports/{report.pk}"

    detail = staff_client.get(url).json()
    assert detail["context"] == {"album": 3}
    assert [e["kind"] for e in detail["events"]] == ["filed"]

    changed = patch_json(
        staff_client,
        url,
        {"status": "in_progress", "assignee": "staff", "note": "Mine"},
    )
    assert changed.status_code == 200
    body = changed.json()
    assert (body["status"], body["assignee"]) == ("in_progress", "staff")
    assert [(e["kind"], e["author"]) for e in body["events"][1:]] == [
        ("status", "staff"),
        ("assigned", "staff"),
        ("note", "staff"),
    ]

    unassigned = patch_json(staff_client, url, {"assignee": None}).json()
    assert unassigned["assignee"] is None
    assert patch_json(staff_client, url, {"assignee": "nobody"}).status_code == 404
    refused = patch_json(staff_client, url, {"status": "open"})
    assert (refused.status_code, refused.json()["error_code"]) == (
        409,
        "bug_report_status",
    )

    assert staff_client.delete(url).status_code == 204
    assert staff_client.get(url).status_code == 404
    assert not BugReportEvent.objects.exists()


def test_staff_purge_through_the_api(staff_client: Client) -> None:
    reports = reports_of_every_kind()
    old = sorted([reports["old resolved"].pk, reports["old wont_fix"].pk])

    dry = post_json(
        staff_client,
        "/api/admin/bug-reports/purge",
        {"older_than_days": 30, "dry_run": True},
    )
    assert dry.json() == {
        "dry_run": True,
        "older_than_days": 30,
        "count": 2,
        "ids": old,
    }
    assert BugReport.objects.count() == 6

    real = post_json(
        staff_client, "/api/admin/bug-reports/purge", {"older_than_days": 30}
    )
    assert real.json()["ids"] == old
    assert BugReport.objects.count() == 4


# --- pages ------------------------------------------------------------------------


def test_every_page_links_to_report_a_problem(client: Client) -> None:
    response = client.get("/")
    html = response.content.decode()
    trace = response["X-Trace-Id"]
    link = f'href="/report-problem/?page=/&amp;trace={trace}"'
    assert html.count(link) == 2  # header and footer


def test_admin_pages_link_to_report_a_problem(staff_client: Client) -> None:
    response = staff_client.get("/admin/")
    html = response.content.decode()
    assert "<title>" in html and "Imagineer" in html
    trace = response["X-Trace-Id"]
    link = f'href="/report-problem/?page=/admin/&amp;trace={trace}"'
    assert html.count(link) == 2


def test_the_report_page_needs_a_sign_in(client: Client) -> None:
    response = client.get("/report-problem/?page=/x/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_a_signed_in_user_files_from_the_report_page(
    user_client: Client, plain_user: Any
) -> None:
    form = user_client.get("/report-problem/?page=/albums/a/&trace=trace-abcd1234")
    html = form.content.decode()
    assert 'value="/albums/a/"' in html and 'value="trace-abcd1234"' in html

    response = user_client.post(
        "/report-problem/",
        {
            "description": "Thumbnails are missing.",
            "page_url": "/albums/a/",
            "failing_trace_id": "trace-abcd1234",
        },
    )

    report = BugReport.objects.get()
    assert response.status_code == 201
    assert f"Report #{report.pk} filed" in response.content.decode()
    assert (report.reporter, report.page_url, report.failing_trace_id) == (
        plain_user,
        "/albums/a/",
        "trace-abcd1234",
    )


def test_an_empty_report_from_the_page_is_shown_again(user_client: Client) -> None:
    response = user_client.post("/report-problem/", {"description": " "})
    assert response.status_code == 422
    assert not BugReport.objects.exists()


@with_failing_page
def test_the_500_page_shows_the_trace_id_and_a_prefilled_report_link() -> None:
    response = Client(raise_request_exception=False).get("/boom/")
    trace = response["X-Trace-Id"]
    html = response.content.decode()
    assert response.status_code == 500
    assert trace in html
    assert f'href="/report-problem/?page=%2Fboom%2F&amp;trace={trace}"' in html
    assert "Report this problem" in html


def test_the_404_page_shows_the_trace_id(client: Client) -> None:
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert response["X-Trace-Id"] in response.content.decode()
    assert "Report a problem" in response.content.decode()


def test_api_errors_keep_the_trace_id_in_the_body(staff_client: Client) -> None:
    response = staff_client.get("/api/admin/bug-reports/999")
    assert response.status_code == 404
    assert response.json()["trace_id"] == response["X-Trace-Id"]
