"""One JSON object per log line (IMAGINEER_LOG_FORMAT=json)."""

from __future__ import annotations

from pythonjsonlogger.json import JsonFormatter as _Base


class JsonFormatter(_Base):
    """A stub until its helper fills it in."""
