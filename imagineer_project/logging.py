from __future__ import annotations

import logging

from imagineer_project.trace import current_trace_id


class TraceIdFilter(logging.Filter):
    """Stamp every record with the trace id of the request being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            record.trace_id = current_trace_id()
        return True
