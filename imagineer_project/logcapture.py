"""The server's recent log lines per trace id, for bug reports.

`TraceLogHandler` (on the root logger, settings.LOGGING) keeps the last
BUG_REPORT_LOG_RECORDS records of each of the last BUG_REPORT_LOG_TRACES
traces in this process's memory, least recently used trace dropped first.
Records outside a request (trace id "-") are not kept.

Several web processes may serve the site, and the report about a failure is
usually filed through another request, maybe another process. So when a
request ends badly (status >= 500, or it logged a WARNING or worse) the
middleware calls `trace_persist`, which copies its records into the Django
cache for a day; `trace_records` reads memory first, then the cache.

Messages are stored as formatted text with the exception, capped in length,
and with the server's own folders (the code, media, the Python install) named
by a placeholder: the lines reach the staff API and admin, and no absolute
path leaves the server.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import OrderedDict, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache

from imagineer_project.trace import current_trace_id

# A message longer than this keeps its start and its end (a traceback's last
# lines say what failed).
MAX_MESSAGE = 4000
_HEAD = 1000
CACHE_TIMEOUT = 24 * 3600
NO_TRACE = "-"

Record = dict[str, str]


def _cache_key(trace_id: str) -> str:
    return f"tracelogs:{trace_id}"


class TraceStore:
    """Bounded, thread-safe: trace id -> its last records (and whether any was
    a WARNING or worse)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._traces: OrderedDict[str, deque[Record]] = OrderedDict()
        self._flagged: set[str] = set()

    def add(
        self, trace_id: str, record: Record, *, warning: bool, traces: int, per: int
    ) -> None:
        with self._lock:
            lines = self._traces.get(trace_id)
            if lines is None or lines.maxlen != per:
                lines = deque(lines or (), maxlen=per)
                self._traces[trace_id] = lines
            self._traces.move_to_end(trace_id)
            lines.append(record)
            if warning:
                self._flagged.add(trace_id)
            while len(self._traces) > traces:
                dropped, _ = self._traces.popitem(last=False)
                self._flagged.discard(dropped)

    def get(self, trace_id: str) -> list[Record] | None:
        with self._lock:
            lines = self._traces.get(trace_id)
            return list(lines) if lines is not None else None

    def flagged(self, trace_id: str) -> bool:
        with self._lock:
            return trace_id in self._flagged

    def clear(self) -> None:
        with self._lock:
            self._traces.clear()
            self._flagged.clear()


STORE = TraceStore()


def _roots() -> list[tuple[str, str]]:
    """(absolute folder, placeholder), longest first so the most specific wins."""
    pairs = {
        str(getattr(settings, "MEDIA_ROOT", "") or ""): "<media>",
        str(getattr(settings, "BASE_DIR", "") or ""): "<app>",
        sys.prefix: "<python>",
        sys.base_prefix: "<python>",
        str(Path.home()): "~",
    }
    found = [(root, name) for root, name in pairs.items() if len(root) > 1]
    return sorted(found, key=lambda pair: len(pair[0]), reverse=True)


def scrub(text: str) -> str:
    """`text` with the server's folders replaced by placeholders, capped."""
    for root, name in _roots():
        text = text.replace(root, name)
    if len(text) > MAX_MESSAGE:
        left_out = f"\n… ({len(text) - MAX_MESSAGE} characters left out) …\n"
        text = f"{text[:_HEAD]}{left_out}{text[-(MAX_MESSAGE - _HEAD) :]}"
    return text


class TraceLogHandler(logging.Handler):
    """Keeps each request's records in STORE (see the module docstring)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            trace_id = getattr(record, "trace_id", None) or current_trace_id()
            if trace_id == NO_TRACE:
                return
            STORE.add(
                trace_id,
                self._entry(record),
                warning=record.levelno >= logging.WARNING,
                traces=settings.BUG_REPORT_LOG_TRACES,
                per=settings.BUG_REPORT_LOG_RECORDS,
            )
        except Exception:  # a log handler must never break the caller
            self.handleError(record)

    def _entry(self, record: logging.LogRecord) -> Record:
        message = record.getMessage()
        if record.exc_info:
            trace = logging.Formatter().formatException(record.exc_info)
            message = f"{message}\n{trace}"
        elif record.exc_text:
            message = f"{message}\n{record.exc_text}"
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        return {
            "time": moment.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(message),
        }


def trace_persist(trace_id: str, *, failed: bool) -> bool:
    """Copy the trace's records into the cache when its request `failed` (a
    5xx) or logged a WARNING or worse, so a report filed through another
    process finds them. True when copied."""
    if trace_id == NO_TRACE or not (failed or STORE.flagged(trace_id)):
        return False
    records = STORE.get(trace_id)
    if not records:
        return False
    try:
        cache.set(_cache_key(trace_id), records, timeout=CACHE_TIMEOUT)
    except Exception:  # a down cache must not turn the response into an error
        logging.getLogger(__name__).warning("Could not keep trace logs in the cache")
        return False
    return True


def trace_records(trace_id: str) -> list[Record]:
    """The records kept for `trace_id`: this process's memory, else the cache,
    else none."""
    if not trace_id or trace_id == NO_TRACE:
        return []
    records = STORE.get(trace_id)
    if records is not None:
        return records
    try:
        cached: Any = cache.get(_cache_key(trace_id))
    except Exception:
        return []
    return list(cached) if isinstance(cached, list) else []
