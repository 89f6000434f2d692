"""Domain errors, and the one JSON error shape of the API.

Services and selectors raise a `DomainError` subclass when a caller asked for
something that cannot be done; each carries its HTTP status and a stable
`error_code`. The API root maps every one of them to this body, once
(imagineer_project.api); the admin, the pages and the commands show its
message. No service raises an HTTP error, and no caller tells errors apart by
their text: subclass instead.

{"error": "Image 7 not found.", "error_code": "not_found",
 "trace_id": "…", "timestamp": "…", "details": {...}}
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from ninja import Schema

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
    507: "insufficient_storage",
}


# What each error status means, in the OpenAPI schema (imagineer_project.api
# adds them to the operations that can answer them).
MEANINGS = {
    400: "The body is not JSON, or asks for something that cannot be done.",
    401: "Not signed in: sign in (as a staff user, but to file a bug report) or "
    "send an API token.",
    403: "Signed in without staff status, or a session write without the CSRF header.",
    404: "Nothing with that id, slug or name (or not visible to the caller).",
    409: "It exists but is in the wrong state for this (a run that ended).",
    413: "The upload is larger than the configured limit.",
    422: "The request is not valid: details.errors names each field and why.",
    429: "Too many requests: wait the Retry-After seconds.",
    503: "A service this needs is not configured or not reachable.",
    507: "Too little free disk space to start this (DISK_FREE_FLOOR_BYTES).",
}

Handler = TypeVar("Handler", bound=Callable[..., Any])


def error_responses(*statuses: int) -> Callable[[Handler], Handler]:
    """Declare the error statuses a handler answers beyond those the API root
    infers from its signature (401/403 with auth, 404 with a path parameter,
    422 with input, 400 with a body): 409, 413, 429, 503, or a 404 for an id
    that comes in the body or query. Put it below the router decorator."""
    unknown = set(statuses) - set(MEANINGS)
    if unknown:
        raise ValueError(
            f"No meaning for status {sorted(unknown)}: add it to MEANINGS."
        )

    def mark(handler: Handler) -> Handler:
        declared = getattr(handler, "error_statuses", frozenset())
        handler.error_statuses = frozenset(declared) | frozenset(statuses)  # type: ignore[attr-defined]
        return handler

    return mark


class DomainError(Exception):
    """An expected failure with a message for the person who asked.

    `status` and `code` are class attributes, so a subclass names a kind of
    failure once; `code=` overrides the code for one raise. `details` goes to
    the API body as it is.
    """

    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details if details is not None else {}

    def headers(self) -> dict[str, str]:
        """Extra response headers (Retry-After, ...)."""
        return {}


class NotFound(DomainError):
    status, code = 404, "not_found"


class Conflict(DomainError):
    """The thing exists but is in the wrong state for this (a run that ended)."""

    status, code = 409, "conflict"


class TooLarge(DomainError):
    status, code = 413, "payload_too_large"


class Invalid(DomainError):
    """Bad input. `errors` names each bad field and why: forms show them on
    their fields, the API under details.errors."""

    status, code = 422, "validation_error"

    def __init__(
        self,
        message: str = "",
        *,
        errors: dict[str, str] | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.errors = dict(errors or {})
        message = message or "; ".join(f"{k}: {v}" for k, v in self.errors.items())
        details = {
            **(details or {}),
            **({"errors": self.errors} if self.errors else {}),
        }
        super().__init__(message, code=code, details=details)


class RateLimited(DomainError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message, details={"retry_after": retry_after})

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(DomainError):
    """A service this needs is not configured or not reachable."""

    status, code = 503, "unavailable"


class InsufficientStorage(DomainError):
    """Too little free disk space to start something that writes a lot
    (imagineer_project.disk.disk_floor_check)."""

    status, code = 507, "insufficient_storage"


class ErrorOut(Schema):
    """The one error shape, for routers that declare their error responses in
    the OpenAPI schema."""

    error: str
    error_code: str
    trace_id: str
    timestamp: str
    details: dict[str, Any]


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


def domain_error_response(
    request: HttpRequest | None, exc: DomainError
) -> JsonResponse:
    response = error_response(
        request, exc.status, exc.message, code=exc.code, details=exc.details
    )
    for name, value in exc.headers().items():
        response[name] = value
    return response


def get_or_404(queryset: Any, pk: int, what: str) -> Any:
    """The row `pk` of `queryset` (a model or a QuerySet), or NotFound naming
    it ("Labeling job 7 not found.")."""
    manager = getattr(queryset, "_default_manager", queryset)
    found = manager.filter(pk=pk).first()
    if found is None:
        raise NotFound(f"{what} {pk} not found.")
    return found
