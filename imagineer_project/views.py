"""Error pages: JSON (in the API's error shape) under /api/, HTML elsewhere.
Both carry the request's trace id; the HTML 500 page also links to "Report a
problem" with that trace id filled in (docs/bug-reports.md)."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.template import loader
from django.urls import reverse
from django.views import defaults

from imagineer_project.errors import error_response
from imagineer_project.trace import current_trace_id

logger = logging.getLogger(__name__)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return error_response(request, 404, f"No API endpoint at {request.path}.")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return error_response(
            request, 500, "Internal server error; quote the trace id."
        )
    # Runs inside TraceIdMiddleware's call, so the trace id is still set. The
    # page renders without a request context: whatever broke (the database,
    # the session) must not break the error page too.
    trace_id = current_trace_id()
    query = urlencode({"page": request.get_full_path(), "trace": trace_id})
    context = {
        "trace_id": trace_id,
        "report_url": f"{reverse('report-problem')}?{query}",
    }
    try:
        body = loader.get_template("500.html").render(context)
    except Exception:
        logger.exception("The 500 page could not be rendered")
        body = f"<h1>Server error</h1><p>Trace id: {trace_id}</p>"
    return HttpResponseServerError(body)
