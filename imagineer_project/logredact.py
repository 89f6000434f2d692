"""Masks what must never reach a log line in production (docs/operations.md,
"Logs"): prompts, negative prompts, captions and descriptions, API keys and
tokens, Authorization values, cookies, passwords and URL query strings.

`RedactFilter` sits on every handler in settings.LOGGING (the console and the
bug-report capture), so both see the same masked record. It is active while
settings.LOG_REDACT is on (the default whenever DEBUG is off), read per
record so a test can switch it.

The record is changed in place: its message is formatted once and masked
(args folded in), its extra fields are masked by name and by content, and an
exception is rendered to masked text (`exc_text`) with `exc_info` dropped, so
no formatter can render the raw traceback again. Redaction that fails withholds
the whole message rather than let it through.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.conf import settings

MASK = "[redacted]"

# Attributes every LogRecord has, plus the ones our filters stamp: anything
# else on a record came in through `extra=` and is checked.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "trace_id",
    "user_id",
    "run",
}

# Extra fields (and dict keys inside them) whose whole value is sensitive.
_SENSITIVE_NAME = re.compile(
    r"(?:^|_)(?:prompt|prompts|caption|captions|description|password|passwd|"
    r"secret|token|api_key|apikey|authorization|cookie|cookies|sessionid|"
    r"csrftoken|headers)$",
    re.IGNORECASE,
)

_KEYS_SECRET = (
    r"password|passwd|pwd|secret|secret_key|access_key|api_key|apikey|token|"
    r"access_token|sessionid|csrftoken|csrfmiddlewaretoken|session_key"
)
_KEYS_TEXT = r"negative_prompt|prompt|caption|description"
_NOT_LETTER = r"(?<![A-Za-z])"

# (pattern, replacement), applied in order to every piece of text.
_RULES: list[tuple[re.Pattern[str], str]] = [
    # Any URL keeps scheme, host and path; its query goes.
    (re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s#\"'<>]+"), r"\1?" + MASK),
    # A bare path with a query (django.request's request, a repr).
    (
        re.compile(r"((?:^|(?<=[\s'\"(=]))/[^\s?#\"'<>]*)\?[^\s#\"'<>]+"),
        r"\1?" + MASK,
    ),
    # Header values: the whole Authorization or Cookie value.
    (
        re.compile(
            _NOT_LETTER + r"((?:proxy-)?authorization|(?:set-)?cookie)"
            r"([\"']?\s*[:=]\s*[\"']?)[^\"'\r\n}]+",
            re.IGNORECASE,
        ),
        r"\1\2" + MASK,
    ),
    (
        re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE),
        r"\1 " + MASK,
    ),
    # Keys and tokens by their shape.
    (re.compile(r"\bsk-ant-[A-Za-z0-9_-]+"), "sk-ant-" + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), "sk-" + MASK),
    (re.compile(r"\bimt_[A-Za-z0-9_-]+"), "imt_" + MASK),
    # key="value" / 'key': 'value' / "key": "value", secret or free text.
    (
        re.compile(
            _NOT_LETTER + rf"({_KEYS_SECRET}|{_KEYS_TEXT})([\"']?\s*[:=]\s*)"
            r"([\"'])(?:\\.|(?!\3).)*\3",
            re.IGNORECASE,
        ),
        r"\1\2\3" + MASK + r"\3",
    ),
    # password=hunter2: up to the next separator.
    (
        re.compile(
            _NOT_LETTER + rf"({_KEYS_SECRET})(\s*[:=]\s*)(?![\"'\[])[^\s&;,'\"}}]+",
            re.IGNORECASE,
        ),
        r"\1\2" + MASK,
    ),
    # prompt=a cat on a hill: free text, up to the next "key=" or the line's end.
    (
        re.compile(
            _NOT_LETTER + rf"({_KEYS_TEXT})(\s*[:=]\s*)(?![\"'\[])(?!\[redacted\])"
            r".*?(?=\s+\w+=|$)",
            re.IGNORECASE | re.MULTILINE,
        ),
        r"\1\2" + MASK,
    ),
]


def redact_text(text: str) -> str:
    """`text` with every sensitive piece the rules know masked."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def redact_value(name: str, value: Any) -> Any:
    """An extra field's value, masked by its `name` or its content. Numbers,
    booleans and None pass; other objects are rendered to masked text."""
    if _SENSITIVE_NAME.search(name):
        return MASK if value not in (None, "") else value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_value(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [redact_value("", item) for item in value]
    return redact_text(str(value))


def redact_record(record: logging.LogRecord) -> None:
    """Mask `record` in place (see the module docstring)."""
    record.msg = redact_text(record.getMessage())
    record.args = None
    if record.exc_info:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    for name in [key for key in record.__dict__ if key not in _STANDARD]:
        setattr(record, name, redact_value(name, record.__dict__[name]))


class RedactFilter(logging.Filter):
    """Mask the record while settings.LOG_REDACT is on; always lets it pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(settings, "LOG_REDACT", False):
            return True
        try:
            redact_record(record)
        except Exception:  # never let an unmaskable line through, nor break logging
            record.msg = "[message withheld: it could not be redacted]"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True
