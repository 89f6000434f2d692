"""The request metrics every web process records (MetricsMiddleware).

Created once per process at import. Under gunicorn each worker is its own
process with its own counts; with PROMETHEUS_MULTIPROC_DIR set *before* this
module is imported, prometheus-client writes them to files in that folder and
GET /metrics adds them up (views.py). Without it they live in memory: right
for `make run` (one process), wrong for several workers.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Histogram

# Uploads and dataset exports take seconds; page and API reads milliseconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter(
    "imagineer_http_requests",
    "HTTP requests answered, by route pattern, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "imagineer_http_request_duration_seconds",
    "Time to answer an HTTP request, by route pattern and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)


def multiprocess_dir() -> str:
    """The shared folder of multiprocess mode ("" when off)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
