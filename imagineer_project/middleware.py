from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from imagineer_project.logcapture import trace_persist
from imagineer_project.logging import log_request
from imagineer_project.trace import new_trace_id, reset_trace_id, set_trace_id

logger = logging.getLogger(__name__)

TRACE_HEADER = "X-Trace-Id"


class TraceIdMiddleware:
    """Give each request a trace id: in the response header, the logs and errors.

    A request that failed (5xx) or logged a warning has its log lines copied
    to the cache as it ends, for a bug report filed through another process
    (imagineer_project.logcapture)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        trace_id = new_trace_id(request.headers.get(TRACE_HEADER))
        request.trace_id = trace_id
        token = set_trace_id(trace_id)
        # Log lines name the user once authentication (further down) knows it.
        try:
            with log_request(request):
                response = self.get_response(request)
                response[TRACE_HEADER] = trace_id
                if response.status_code >= 500:
                    logger.error(
                        "%s %s -> %s",
                        request.method,
                        request.path,
                        response.status_code,
                    )
            trace_persist(trace_id, failed=response.status_code >= 500)
            return response
        finally:
            reset_trace_id(token)


class ApiTokenMiddleware:
    """Authenticate `Authorization: Bearer <token>` callers of the JSON API
    (`/api/...`) as the token's user.

    A token-authenticated request carries no cookies an attacker could ride, so it
    is exempt from CSRF; session callers still need the CSRF token for mutations.
    Outside the API (the admin, the HTML pages) the header is ignored: a token
    is for scripts, and must not open a site whose forms rely on CSRF.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from imagineer_project.tokens import token_scope_covers, user_for_bearer_header

        request.auth_via_token = False
        header = request.headers.get("Authorization", "")
        if header and token_scope_covers(request.path_info):
            user = user_for_bearer_header(header)
            if user is not None:
                request.user = user
                request.auth_via_token = True
                request._dont_enforce_csrf_checks = True
            elif header.lower().startswith("bearer "):
                from imagineer_project.errors import error_response

                return error_response(
                    request, 401, "The API token is invalid or revoked."
                )
        return self.get_response(request)


class ApiMethodNotAllowedMiddleware:
    """Answer a method an API path lacks in the API's one error shape
    (imagineer_project.errors), as every other API error is answered.

    django-ninja answers it itself, before any exception handler, with a
    plain-text "Method not allowed"; a script reading `error_code` got text.
    The `Allow` header is kept and the allowed methods go to `details`.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code != 405
            or not request.path_info.startswith("/api/")
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        from imagineer_project.errors import error_response

        allowed = sorted(m.strip() for m in response.get("Allow", "").split(",") if m)
        answer = error_response(
            request,
            405,
            f"{request.method} is not allowed on {request.path_info}; "
            f"use {', '.join(allowed) or 'another method'}.",
            details={"allowed": allowed},
        )
        answer["Allow"] = ", ".join(allowed)
        return answer
