"""The current request's trace id, shared by the middleware, logs and errors."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

_current: ContextVar[str] = ContextVar("trace_id", default="-")
_VALID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def new_trace_id(offered: str | None = None) -> str:
    """Accept a caller's X-Trace-Id when it is well formed, else mint one."""
    if offered and _VALID.match(offered):
        return offered
    return uuid.uuid4().hex


def current_trace_id() -> str:
    return _current.get()


def set_trace_id(trace_id: str) -> object:
    return _current.set(trace_id)


def reset_trace_id(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
