"""Adaptive politeness: the Throttle rules on a fake clock, and SafeFetcher against
a real local server that answers 429."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from scraping.safe_fetch import FetchError
from scraping.tests.test_safe_fetch import Site, make_fetcher, serve
from scraping.throttle import BACKOFF_FLOOR, Throttle


def make_throttle(**overrides: Any) -> Throttle:
    options: dict[str, Any] = {"start_delay": 1.0, "target_concurrency": 2}
    return Throttle(**(options | overrides))


def test_starts_at_the_configured_delay_and_spaces_starts() -> None:
    throttle = make_throttle()
    assert [throttle.reserve(now=10.0) for _ in range(3)] == [0.0, 1.0, 2.0]
    assert throttle.reserve(now=20.0) == 0.0  # an idle host owes no wait


def test_fast_answers_lower_the_delay_gradually_to_latency_over_target() -> None:
    throttle = make_throttle()
    delays = []
    for _ in range(4):
        throttle.observe(0.0, latency=0.2, status=200)
        delays.append(throttle.current())
    # Halfway towards 0.2 / 2 each time: recovery is gradual, never a jump.
    assert delays == pytest.approx([0.55, 0.325, 0.2125, 0.15625])
    for _ in range(30):
        throttle.observe(0.0, latency=0.2, status=200)
    assert throttle.current() == pytest.approx(0.1)


def test_a_slow_answer_raises_the_delay_at_once() -> None:
    throttle = make_throttle(start_delay=0.1)
    throttle.observe(0.0, latency=3.0, status=200)
    assert throttle.current() == 1.5  # 3 s latency / 2 in flight


@pytest.mark.parametrize("status", [429, 503])
def test_overload_doubles_the_delay_and_pushes_back_booked_starts(status: int) -> None:
    throttle = make_throttle(start_delay=0.0)
    assert throttle.reserve(now=0.0) == 0.0
    throttle.observe(0.0, latency=0.01, status=status)
    assert throttle.current() == BACKOFF_FLOOR  # from 0, at least the floor
    assert throttle.reserve(now=0.0) == BACKOFF_FLOOR
    throttle.observe(0.0, latency=0.01, status=status)
    assert throttle.current() == 2 * BACKOFF_FLOOR


def test_retry_after_sets_the_delay_when_longer() -> None:
    throttle = make_throttle(start_delay=0.2)
    throttle.observe(5.0, latency=0.01, status=429, retry_after=7.0)
    assert throttle.current() == 7.0
    assert throttle.reserve(now=5.0) == 7.0


@pytest.mark.parametrize("status", [None, 500])
def test_errors_never_lower_the_delay(status: int | None) -> None:
    throttle = make_throttle()
    throttle.observe(0.0, latency=0.01, status=status)
    assert throttle.current() == 1.0


def test_never_below_the_minimum_nor_crawl_delay() -> None:
    throttle = make_throttle(start_delay=0.0, min_delay=0.25)
    assert throttle.current() == 0.25
    for _ in range(20):
        throttle.observe(0.0, latency=0.001, status=200)
    assert throttle.current() == 0.25
    throttle.crawl_delay = 2.0  # robots.txt's Crawl-delay is honoured as given
    assert throttle.current() == 2.0
    assert [throttle.reserve(now=0.0) for _ in range(2)] == [0.0, 2.0]


def test_fixed_mode_keeps_the_configured_delay() -> None:
    throttle = make_throttle(adaptive=False)
    for status in (200, 429, 503, None):
        throttle.observe(0.0, latency=9.0, status=status)
    assert throttle.current() == 1.0


def test_the_delay_is_capped() -> None:
    throttle = make_throttle()
    for _ in range(10):
        throttle.observe(0.0, latency=0.01, status=503)
    assert throttle.current() == 60.0


# --- Against a real server ---------------------------------------------------------


def hits_in_one_second(site: Site, path: str, *, adaptive: bool) -> int:
    """Ask for `path` over and over for one second; how many reached the server."""

    async def run() -> None:
        async with make_fetcher(
            adaptive=adaptive, retries=0, per_host_concurrency=2
        ) as fetcher:

            async def one() -> None:
                with contextlib.suppress(FetchError):
                    await fetcher.fetch(site.url(path))

            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.gather(*(one() for _ in range(200)))

    before = len(site.hits)
    asyncio.run(run())
    return len(site.hits) - before


def test_a_server_answering_429_gets_fewer_requests_afterwards() -> None:
    with serve() as site:
        # Without adaptation, a 429 (Retry-After: 0, no retries) does not slow the
        # next request: the same second brings many.
        unthrottled = hits_in_one_second(site, "/busy", adaptive=False)
        # Adapting, the first answers (2 in flight) set a delay of at least
        # BACKOFF_FLOOR, doubling with each 429 after: 0.5 s, then 1 s.
        throttled = hits_in_one_second(site, "/busy", adaptive=True)
        served = hits_in_one_second(site, "/page", adaptive=True)
    assert throttled <= 3
    assert unthrottled > 3 * throttled
    assert served > 3 * throttled  # a server that answers 200 is not slowed
