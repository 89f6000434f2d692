"""One JSON error shape for the whole API, carrying the request's trace id:

{"error": "Image 7 not found.", "error_code": "not_found",
 "trace_id": "…", "timestamp": "…", "details": {...}}
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from imagineer_project.trace import current_trace_id

logger = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def error_body(
    status: int, message: str, *, code: str | None = None, details: Any = None
) -> dict[str, Any]:
    return {
        "error": message,
        "error_code": code or CODES.get(status, "error"),
        "trace_id": current_trace_id(),
        "timestamp": timezone.now().isoformat(),
        "details": details if details is not None else {},
    }


def error_response(
    request: HttpRequest | None,
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: Any = None,
) -> JsonResponse:
    response = JsonResponse(
        error_body(status, message, code=code, details=details), status=status
    )
    response["X-Trace-Id"] = current_trace_id()
    return response


class ApiError(Exception):
    """An expected failure with a status, a code and a message for the caller."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.details = details


def get_or_404(queryset: Any, pk: int, what: str) -> Any:
    """The row `pk` of `queryset` (a model or a QuerySet), or a 404 ApiError that
    names it ("Labeling job 7 not found.")."""
    manager = getattr(queryset, "_default_manager", queryset)
    found = manager.filter(pk=pk).first()
    if found is None:
        raise ApiError(404, f"{what} {pk} not found.")
    return found
