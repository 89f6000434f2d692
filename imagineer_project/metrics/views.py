"""GET /metrics: Prometheus text format for a scraper holding the token, or a
staff member looking by hand."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

# Importing them registers the scrape-time sources.
from imagineer_project.metrics.collectors import DatabaseCollector
from imagineer_project.metrics.http import multiprocess_dir


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        # Off: the same answer as any unknown URL.
        raise Http404
    refusal = _refusal(request, token)
    if refusal is not None:
        return refusal
    body = generate_latest(_registry())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def _refusal(request: HttpRequest, token: str) -> HttpResponse | None:
    """None when the caller may read; else 401 (no or a wrong token: the
    scraper's configuration is at fault) or 403 (signed in, not staff)."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    # Constant time: the comparison must not leak how much of a guess matched.
    if scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        return None
    user = request.user
    if user.is_authenticated and user.is_staff and user.is_active:
        return None
    if user.is_authenticated and not header:
        return HttpResponse("Staff only.\n", status=403, content_type="text/plain")
    response = HttpResponse(
        "A bearer token is needed.\n", status=401, content_type="text/plain"
    )
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def _registry() -> CollectorRegistry:
    """This scrape's metrics: the request counts (every gunicorn worker's,
    from the shared folder, in multiprocess mode; else this process's) and
    the scrape-time sources."""
    registry = CollectorRegistry(auto_describe=False)
    if folder := multiprocess_dir():
        MultiProcessCollector(registry, path=folder)
    else:
        registry.register(REGISTRY)
    registry.register(DatabaseCollector())
    return registry
