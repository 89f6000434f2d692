"""Per-user sliding-window rate limits, kept in the Django cache.

A limit reads "20/hour" (also second, minute, day, or a count of them:
"5/10m"). Each key keeps the times of its accepted requests inside the window;
a request is refused while `count` of them are younger than the window, and the
refusal says how long until the oldest one leaves it (the Retry-After).

The check and the write are two cache calls, not one atomic step: requests of
the same user that race each other may both get in. Good enough for keeping one
person from queueing hours of GPU work; not a billing meter.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.core.cache import cache

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(
    r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$",
    re.IGNORECASE,
)


class RateInvalid(ValueError):
    """A limit that does not read as "N/unit"."""


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count} per {self.seconds}s"


def parse_rate(text: str) -> Rate | None:
    """Read a limit: `20/hour` is Rate(20, 3600); empty or `off` is None."""
    if not text or text.strip().lower() in ("off", "none", "0"):
        return None
    match = _RATE.match(text)
    if match is None:
        raise RateInvalid(
            f"Rate limit {text!r} is not like '20/hour' (second, minute, hour, day; "
            "'5/10m' for 5 per 10 minutes; 'off' for none)."
        )
    count, multiple, unit = match.groups()
    seconds = int(multiple or 1) * _UNITS[unit[0].lower()]
    if seconds <= 0 or int(count) <= 0:
        raise RateInvalid(f"Rate limit {text!r} allows nothing; use 'off' for none.")
    return Rate(int(count), seconds)


def rate_limit_hit(
    key: str,
    rate: Rate | None,
    *,
    cost: int = 1,
    now: Callable[[], float] = time.time,
) -> int | None:
    """Count `cost` requests under `key` (a set of 12 images counts 12); None
    when they are allowed, else the whole seconds (at least 1) until they would
    be. Refused requests are not counted. A cost above the rate's count is never
    allowed: the caller says so before asking (see RateLimited)."""
    if rate is None:
        return None
    cache_key = f"ratelimit:{key}"
    moment = now()
    window_start = moment - rate.seconds
    recent = [t for t in cache.get(cache_key, []) if t > window_start]
    if len(recent) + cost > rate.count:
        if cost > rate.count:
            return rate.seconds
        # `cost` places free up once the request that many places from the
        # end of the allowed count has left the window.
        frees_at = recent[len(recent) + cost - rate.count - 1] + rate.seconds
        return max(1, math.ceil(frees_at - moment))
    recent.extend([moment] * cost)
    cache.set(cache_key, recent, timeout=rate.seconds + 1)
    return None
