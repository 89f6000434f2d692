"""Prometheus metrics: GET /metrics (docs/operations.md, "Metrics").

Two sources, so that the numbers are right however many web and worker
processes (and hosts) there are:

- requests by route and status, with latency: counted in each web process by
  `MetricsMiddleware` (http.py; prometheus-client's multiprocess mode adds up
  gunicorn's workers);
- everything about work (runs, queues, images, labeling spend, training speed,
  disk): read from the database, the broker and the disk at scrape time
  (collectors.py), so workers on other hosts need no endpoint of their own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

# `<int:run_id>` and `<slug>` in a Django route read `{run_id}` and `{slug}`.
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
UNMATCHED = "<unmatched>"
# Any other method a client makes up counts as "other" (bounded labels).
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def route_label(request: HttpRequest) -> str:
    """The URL pattern that answered ("/api/albums/{slug}"), never the raw
    path: one series per route, however many albums or ids there are."""
    match = getattr(request, "resolver_match", None)
    if match is None or not match.route:
        return UNMATCHED
    return "/" + _CONVERTER.sub(r"{\1}", match.route).lstrip("^").rstrip("$")


class MetricsMiddleware:
    """Counts requests by route and status, and observes their latency."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Imported here: multiprocess mode is chosen when the metrics are
        # created, and a server sets PROMETHEUS_MULTIPROC_DIR before that.
        from imagineer_project.metrics.http import LATENCY, REQUESTS

        started = time.perf_counter()
        response = self.get_response(request)
        route = route_label(request)
        method = request.method if request.method in _METHODS else "other"
        LATENCY.labels(route, method).observe(time.perf_counter() - started)
        REQUESTS.labels(route, method, str(response.status_code)).inc()
        return response
