"""One JSON object per log line (IMAGINEER_LOG_FORMAT=json, the production
default; docs/operations.md, "Logs").

Every line has the same first keys, so a log shipper can index them without
a schema per logger: time (ISO 8601, UTC), level, logger, message, trace_id,
user_id and run (null outside a request, a signed-in user or a run's body);
then any `extra=` fields of the call, and exc_info as text when there was an
exception. The redact filter has already masked what it must by the time a
record gets here.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _Base

from imagineer_project.logging import current_run, current_user_id
from imagineer_project.trace import current_trace_id

NO_TRACE = "-"
# Written first by add_fields; the base class must not copy them again.
_OWN = ("time", "level", "logger", "message", "trace_id", "user_id", "run")


class JsonFormatter(_Base):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, *_OWN])
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        trace_id = getattr(record, "trace_id", None) or current_trace_id()
        log_data.update(
            time=moment.isoformat(timespec="milliseconds"),
            level=record.levelname,
            logger=record.name,
            message=record.message,
            trace_id=None if trace_id == NO_TRACE else trace_id,
            user_id=getattr(record, "user_id", None) or current_user_id(),
            run=getattr(record, "run", None) or current_run(),
        )
        super().add_fields(log_data, record, message_dict)
