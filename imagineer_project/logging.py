"""What every log line says about where it was written: the request's trace
id, the signed-in user's id, and the run (`kind:id`) whose body is running.

The middleware binds the request (`log_request`) and runs.run_body binds the
run (`log_run`), each in a ContextVar, so a line written deep inside a service
carries them without being passed anything. Threads started inside (a thread
pool) do not inherit them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from django.utils.functional import LazyObject, empty

from imagineer_project.trace import current_trace_id

_request: ContextVar[Any] = ContextVar("log_request", default=None)
_run: ContextVar[str | None] = ContextVar("log_run", default=None)


@contextlib.contextmanager
def log_request(request: Any) -> Iterator[None]:
    """Lines logged inside carry the user of `request` once it is known."""
    token = _request.set(request)
    try:
        yield
    finally:
        _request.reset(token)


@contextlib.contextmanager
def log_run(label: str) -> Iterator[None]:
    """Lines logged inside carry `label` ("trainingrun:12") as their run."""
    token = _run.set(label)
    try:
        yield
    finally:
        _run.reset(token)


def current_run() -> str | None:
    return _run.get()


def current_user_id() -> int | None:
    """The id of the request's user, if the request has been authenticated.

    Read lazily: the trace middleware runs before authentication, and a log
    filter must not load the user itself (a query that logs, from inside
    logging). A user not yet loaded reads as None, like an anonymous one.
    """
    request = _request.get()
    user = None if request is None else request.__dict__.get("user")
    if isinstance(user, LazyObject):
        user = user._wrapped
        if user is empty:
            return None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


class TraceIdFilter(logging.Filter):
    """Stamp every record with the trace id of the request being served, its
    user's id and the run being executed (None outside either)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            # django.request logs a 4xx/5xx after the middleware has returned
            # (the trace is no longer current): its record carries the request.
            request = getattr(record, "request", None)
            record.trace_id = getattr(request, "trace_id", None) or current_trace_id()
        if not hasattr(record, "user_id"):
            record.user_id = current_user_id()
        if not hasattr(record, "run"):
            record.run = current_run()
        return True
