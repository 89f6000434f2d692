"""The "Report a problem" page (/report-problem/), linked from the header and
footer of every page and admin page with the page and its trace id filled in."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from imagineer_project.bug_reports.forms import BugReportForm
from imagineer_project.bug_reports.services import bug_report_file
from imagineer_project.errors import DomainError
from imagineer_project.forms import add_domain_error
from imagineer_project.models import BugReport


# Not the admin's login (LOGIN_URL): people without staff status report too.
@login_required(login_url="login")
def report_problem_page(request: HttpRequest) -> HttpResponse:
    status, headers = 200, {}
    if request.method != "POST":
        form = BugReportForm(initial=BugReportForm.initial_from_query(request.GET))
    else:
        form = BugReportForm(request.POST)
        status = 422  # unless the report is filed, or the error says otherwise
        if form.is_valid():
            try:
                report = bug_report_file(
                    reporter=request.user,
                    description=form.cleaned_data["description"],
                    page_url=form.cleaned_data["page_url"],
                    trace_id=getattr(request, "trace_id", ""),
                    failing_trace_id=form.cleaned_data["failing_trace_id"],
                    context={"filed_from": "report-problem page"},
                    user_agent=request.headers.get("User-Agent", ""),
                )
            except DomainError as exc:
                add_domain_error(form, exc, fields={"trace_id": "failing_trace_id"})
                status, headers = exc.status, exc.headers()
            else:
                return _filed(request, report)
    response = render(request, "bug_reports/report.html", {"form": form}, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def _filed(request: HttpRequest, report: BugReport) -> HttpResponse:
    # The page link came from the query string: offer it back only when it
    # stays on this site.
    safe = url_has_allowed_host_and_scheme(
        report.page_url, allowed_hosts={request.get_host()}
    )
    context = {"report": report, "back_url": report.page_url if safe else ""}
    return render(request, "bug_reports/filed.html", context, status=201)
