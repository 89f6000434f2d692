"""One rate-limit layer: named limits per user (per IP for anonymous callers),
counted in the shared "ratelimit" cache (docs/api.md, "Rate limits").

Every limit is set in IMAGINEER_RATE_LIMITS ("generate=20/h,upload_bytes=2GB/h")
and has a default (DEFAULTS). Windows are django-ratelimit's fixed windows
(its window edges and cache keys), so a counter lives in one cache entry that
every web process and host increments atomically: Redis INCRBY with
REDIS_URL, a locked row of the database cache otherwise. A request adds its
cost first and, when the sum passes the limit, takes it back and is refused:
concurrent requests can never be admitted past the limit (never a
read-modify-write list of times).

Services check limits only when the caller asks (`rate_limited=True` from the
API and the admin); commands never do. The API root copies each check's
`Usage` onto the response as RateLimit-* headers (rate_limit_meter_start).
"""

from __future__ import annotations

import contextvars
import re
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.db import BaseDatabaseCache
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router, transaction
from django.http import HttpRequest
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key

from imagineer_project.errors import RateLimited

CACHE_ALIAS = "ratelimit"

# Generous but finite: a person working by hand never meets them; a runaway
# script does. generate/set_generate count images, upload_files files,
# upload_bytes bytes, the others starts.
DEFAULTS = {
    "generate": "200/hour",  # GENERATION_RATE_LIMIT, when set
    "set_generate": "200/hour",  # GENERATION_RATE_LIMIT, when set
    "upload_files": "2000/hour",
    "upload_bytes": "10GB/hour",
    "train": "20/hour",
    "label": "60/hour",
    "scrape": "60/hour",
    "bug_report": "20/hour",  # BUG_REPORT_RATE_LIMIT, when set
}
NAMES = tuple(DEFAULTS)
# What a refusal says there were too many of.
_COUNTED = {
    "generate": "generation requests",
    "set_generate": "set generation requests",
    "upload_files": "uploaded files",
    "upload_bytes": "uploaded bytes",
    "train": "training runs started",
    "label": "labeling jobs started",
    "scrape": "scrape jobs started",
    "bug_report": "bug reports",
}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZES = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_RATE = re.compile(
    r"^\s*(\d+)\s*(b|kb|mb|gb|tb)?\s*/\s*(\d*)\s*"
    r"(s|sec|second|m|min|minute|h|hr|hour|d|day)s?\s*$",
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


@dataclass(frozen=True)
class Usage:
    """One limit as a request left it: what the RateLimit-* headers say."""

    name: str
    limit: int
    remaining: int
    reset: int  # seconds until the window ends

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


class RateLimitExceeded(RateLimited):
    """Over limit `usage.name`: the 429 with Retry-After and RateLimit-*."""

    def __init__(self, usage: Usage, message: str = "") -> None:
        self.usage = usage
        retry_after = max(1, usage.reset)
        super().__init__(
            message
            or f"Too many {_COUNTED[usage.name]} (rate limit '{usage.name}'); "
            f"try again in {retry_after} seconds.",
            retry_after=retry_after,
        )
        self.details = {"limit": usage.name, "retry_after": retry_after}

    def headers(self) -> dict[str, str]:
        return {**super().headers(), **self.usage.headers()}


def parse_rate(text: str, *, sizes: bool = False) -> Rate | None:
    """Read a limit: `20/hour` is Rate(20, 3600), `2GB/h` (with `sizes`)
    Rate(2 * 1024**3, 3600); empty or `off` is None."""
    if not text or text.strip().lower() in ("off", "none", "0"):
        return None
    match = _RATE.match(text)
    if match is None or (match.group(2) and not sizes):
        raise RateInvalid(
            f"Rate limit {text!r} is not like '20/hour' (s, m, h, d or second, "
            "minute, hour, day; '5/10m' for 5 per 10 minutes; 'off' for none"
            + ("; sizes in KB, MB, GB, TB" if sizes else "")
            + ")."
        )
    count, size, multiple, unit = match.groups()
    total = int(count) * _SIZES[(size or "").lower()]
    seconds = int(multiple or 1) * _UNITS[unit[0].lower()]
    if seconds <= 0 or total <= 0:
        raise RateInvalid(f"Rate limit {text!r} allows nothing; use 'off' for none.")
    return Rate(total, seconds)


def rate_limits() -> dict[str, Rate | None]:
    """Every named limit, from DEFAULTS, the old GENERATION_RATE_LIMIT and
    BUG_REPORT_RATE_LIMIT, then IMAGINEER_RATE_LIMITS. ImproperlyConfigured
    names a bad entry or an unknown name."""
    texts = dict(DEFAULTS)
    # The older per-feature settings keep their meaning ("" or "off": none).
    generation = getattr(settings, "GENERATION_RATE_LIMIT", DEFAULTS["generate"])
    texts["generate"] = texts["set_generate"] = generation
    texts["bug_report"] = getattr(
        settings, "BUG_REPORT_RATE_LIMIT", DEFAULTS["bug_report"]
    )
    for entry in (settings.RATE_LIMITS or "").split(","):
        if not entry.strip():
            continue
        name, sep, value = entry.partition("=")
        name = name.strip()
        if not sep or name not in DEFAULTS:
            raise ImproperlyConfigured(
                f"IMAGINEER_RATE_LIMITS entry {entry.strip()!r}: expected "
                f"NAME=RATE with NAME one of {', '.join(NAMES)}."
            )
        texts[name] = value.strip()
    limits = {}
    for name, text in texts.items():
        try:
            limits[name] = parse_rate(text, sizes=name == "upload_bytes")
        except RateInvalid as exc:
            raise ImproperlyConfigured(f"Rate limit {name}: {exc}") from exc
    return limits


def staff_exempt() -> set[str]:
    """The limits staff skip (IMAGINEER_RATE_LIMITS_STAFF_EXEMPT, plus generate
    and set_generate with GENERATION_RATE_LIMIT_EXEMPT_STAFF)."""
    names = {n.strip() for n in settings.RATE_LIMITS_STAFF_EXEMPT if n.strip()}
    unknown = names - set(NAMES)
    if unknown:
        raise ImproperlyConfigured(
            f"IMAGINEER_RATE_LIMITS_STAFF_EXEMPT names {', '.join(sorted(unknown))}"
            f": not a limit (one of {', '.join(NAMES)})."
        )
    if getattr(settings, "GENERATION_RATE_LIMIT_EXEMPT_STAFF", False):
        names |= {"generate", "set_generate"}
    return names


def rate_limits_check() -> None:
    """Refuse to start on a bad limit setting (called from AppConfig.ready)."""
    rate_limits()
    staff_exempt()


# --- the request a check belongs to -----------------------------------------------


@dataclass
class _Meter:
    ip: str
    usages: list[Usage]


# Set by the API root for each API request: the client IP that keys anonymous
# callers, and the usages its checks leave for the RateLimit-* headers.
_meter: contextvars.ContextVar[_Meter | None] = contextvars.ContextVar(
    "rate_limit_meter", default=None
)


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR; the first X-Forwarded-For address only behind a proxy we
    were told about (SECURE_PROXY_SSL), since any client can send that header."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded and getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        return forwarded.split(",")[0].strip()
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def rate_limit_meter_start(request: HttpRequest) -> None:
    _meter.set(_Meter(ip=client_ip(request), usages=[]))


def rate_limit_meter_headers() -> dict[str, str]:
    """The RateLimit-* headers of the checks since rate_limit_meter_start (the
    tightest limit when a request met several), and forget them."""
    meter = _meter.get()
    _meter.set(None)
    if meter is None or not meter.usages:
        return {}
    return min(meter.usages, key=lambda u: u.remaining).headers()


# --- counting ----------------------------------------------------------------------


def _identity(user: Any) -> tuple[str, bool]:
    meter = _meter.get()
    if user is not None and getattr(user, "is_authenticated", False):
        return f"user:{user.pk}", bool(user.is_staff)
    return f"ip:{meter.ip if meter else 'unknown'}", False


def _incr(key: str, delta: int, timeout: int) -> int:
    """Add `delta` to the counter at `key` atomically and return the sum."""
    # A CACHES without the alias (a test's, an old deployment's): the default.
    cache = caches[CACHE_ALIAS if CACHE_ALIAS in settings.CACHES else "default"]
    cache.add(key, 0, timeout)
    if not isinstance(cache, BaseDatabaseCache):
        # Redis INCRBY, locmem under its lock: atomic already.
        try:
            return cache.incr(key, delta)
        except ValueError:  # expired between add and incr
            cache.add(key, 0, timeout)
            return cache.incr(key, delta)
    # The database cache's incr is a get then a set: lock the row first (an
    # UPDATE holds it on PostgreSQL; SQLite takes its write lock) so a second
    # process waits for our set instead of reading the old value.
    db = router.db_for_write(cache.cache_model_class)
    table = connections[db].ops.quote_name(cache._table)
    with transaction.atomic(using=db), connections[db].cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET expires = expires WHERE cache_key = %s",  # noqa: S608
            [cache.make_and_validate_key(key)],
        )
        value = int(cache.get(key, 0)) + delta
        cache.set(key, value, timeout)
    return value


def rate_limit_take(name: str, *, user: Any = None, cost: int = 1) -> Usage | None:
    """Count `cost` against limit `name` for `user` (the client IP when
    anonymous). Returns the Usage (None when the limit is off or the user is
    exempt); raises RateLimitExceeded, uncounted, when it does not fit."""
    rate = rate_limits()[name]
    identity, is_staff = _identity(user)
    if rate is None or (is_staff and name in staff_exempt()):
        return None
    window, key = _window_key(name, rate, identity)
    if cost > rate.count:
        usage = Usage(name, rate.count, 0, rate.seconds)
        raise RateLimitExceeded(
            usage,
            f"This asks for {cost} against rate limit '{name}', more than it "
            f"allows in a whole window ({rate}); ask for less at once.",
        )
    count = _incr(key, cost, rate.seconds + EXPIRATION_FUDGE)
    reset = max(0, window - int(time.time()))
    if count > rate.count:
        _incr(key, -cost, rate.seconds + EXPIRATION_FUDGE)
        usage = Usage(name, rate.count, max(0, rate.count - count + cost), reset)
        _record(usage)
        raise RateLimitExceeded(usage)
    usage = Usage(name, rate.count, rate.count - count, reset)
    _record(usage)
    return usage


def rate_limit_take_all(costs: dict[str, int], *, user: Any = None) -> None:
    """rate_limit_take for each of `costs` ({"upload_files": 3, ...}); when one
    refuses, the ones already counted are given back before it raises."""
    taken: list[tuple[str, int]] = []
    try:
        for name, cost in costs.items():
            if rate_limit_take(name, user=user, cost=cost) is not None:
                taken.append((name, cost))
    except RateLimitExceeded:
        identity, _ = _identity(user)
        for name, cost in taken:
            rate = rate_limits()[name]
            assert rate is not None  # it counted
            _, key = _window_key(name, rate, identity)
            _incr(key, -cost, rate.seconds + EXPIRATION_FUDGE)
        raise


def _window_key(name: str, rate: Rate, identity: str) -> tuple[int, str]:
    """django-ratelimit's window end for `identity` (staggered per key, so
    windows do not all reset at once) and its cache key."""
    window = _get_window(identity, rate.seconds)
    key = _make_cache_key(name, window, (rate.count, rate.seconds), identity, None)
    return window, key


def _record(usage: Usage) -> None:
    meter = _meter.get()
    if meter is not None:
        meter.usages.append(usage)
