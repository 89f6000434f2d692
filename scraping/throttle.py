"""Adaptive politeness: how long to wait between two request starts to one host.

AutoThrottle-style (Scrapy's extension, and the rule its docs give): aim at a
target number of requests in flight per host, so the delay tends to
`latency / target_concurrency`. A faster answer lowers the delay only halfway
towards that target (recover gradually); a slower one raises it at once. 429 and
503 double it (at least to `BACKOFF_FLOOR`, and to Retry-After when the server
says). A robots.txt Crawl-delay is honoured as given: the delay never drops below
it, nor below the deployment's `SCRAPER_MIN_DELAY`.

Pure and clock-free: callers pass `now` (time.monotonic() in the fetcher, a fake
clock in tests).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

BACKOFF_FLOOR = 0.5  # seconds: the least delay after a 429/503, even from 0
MAX_DELAY = 60.0  # like Scrapy's AUTOTHROTTLE_MAX_DELAY
_OVERLOADED = frozenset({429, 503})


@dataclass
class Throttle:
    """One host's request spacing. `adaptive=False` keeps the start delay fixed
    (still raised to Crawl-delay and the minimum): the fetcher before adaptation."""

    start_delay: float
    min_delay: float = 0.0
    target_concurrency: float = 2.0
    adaptive: bool = True
    max_delay: float = MAX_DELAY
    crawl_delay: float | None = None  # from robots.txt, once read
    delay: float = field(init=False)
    next_start: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.target_concurrency <= 0:
            raise ValueError("target_concurrency must be positive")
        self.delay = min(max(self.start_delay, self.min_delay), self.max_delay)

    @property
    def floor(self) -> float:
        return max(self.min_delay, self.crawl_delay or 0.0)

    def current(self) -> float:
        """The delay the next request start keeps after the previous one."""
        return min(max(self.delay, self.floor), max(self.max_delay, self.floor))

    def reserve(self, now: float) -> float:
        """Book the next request start: seconds to wait from `now` before it."""
        start = max(now, self.next_start)
        self.next_start = start + self.current()
        return start - now

    def observe(
        self,
        now: float,
        *,
        latency: float,
        status: int | None,
        retry_after: float | None = None,
    ) -> None:
        """Learn from one answer: `latency` to its headers (or until it failed),
        `status` None for a network error or a timeout."""
        if not self.adaptive:
            return
        if status in _OVERLOADED:
            delay = max(2 * self.delay, BACKOFF_FLOOR, retry_after or 0.0)
        else:
            target = latency / self.target_concurrency
            delay = max((self.delay + target) / 2, target)
            if status is None or status >= 500:
                delay = max(delay, self.delay)  # an error never speeds us up
        self.delay = min(max(delay, self.min_delay), self.max_delay)
        if status in _OVERLOADED:
            # Starts already booked at the old pace wait for the new one too.
            self.next_start = max(self.next_start, now + self.current())
            logger.info("backing off: %gs between requests", self.current())
