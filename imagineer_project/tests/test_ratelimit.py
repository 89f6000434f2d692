"""The sliding-window rate limit kept in the Django cache."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from imagineer_project.ratelimit import Rate, RateInvalid, parse_rate, rate_limit_hit


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    cache.clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("20/hour", Rate(20, 3600)),
        ("10/minute", Rate(10, 60)),
        ("3/s", Rate(3, 1)),
        ("5/10m", Rate(5, 600)),
        ("100 / days", Rate(100, 86400)),
        ("", None),
        ("off", None),
    ],
)
def test_parse_rate(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["20", "x/hour", "0/hour", "5/fortnight"])
def test_bad_rates_say_what_is_expected(text: str) -> None:
    with pytest.raises(RateInvalid):
        parse_rate(text)


def test_the_window_slides() -> None:
    clock, rate = Clock(), Rate(2, 60)
    assert rate_limit_hit("u1", rate, now=clock) is None
    clock.now += 20
    assert rate_limit_hit("u1", rate, now=clock) is None
    clock.now += 10
    # Full: the first request leaves the window 30 s from now.
    assert rate_limit_hit("u1", rate, now=clock) == 30
    assert rate_limit_hit("u2", rate, now=clock) is None  # per key
    clock.now += 30.5
    assert rate_limit_hit("u1", rate, now=clock) is None  # a slot came free
    assert rate_limit_hit("u1", rate, now=clock) == 20  # until the second leaves


def test_a_request_counts_its_cost() -> None:
    clock, rate = Clock(), Rate(5, 60)
    assert rate_limit_hit("u", rate, cost=2, now=clock) is None  # t=0: 2 of 5
    clock.now += 10
    assert rate_limit_hit("u", rate, cost=2, now=clock) is None  # t=10: 4 of 5
    clock.now += 10
    # 3 more need two places: free once both images of t=0 left, at t=60.
    assert rate_limit_hit("u", rate, cost=3, now=clock) == 40
    assert rate_limit_hit("u", rate, cost=1, now=clock) is None  # 5 of 5
    # More than the whole window never fits; the caller says so first.
    assert rate_limit_hit("v", rate, cost=6, now=clock) == 60


def test_refused_requests_do_not_count() -> None:
    clock, rate = Clock(), Rate(1, 60)
    assert rate_limit_hit("u", rate, now=clock) is None
    for _ in range(5):
        clock.now += 10
        assert rate_limit_hit("u", rate, now=clock) is not None
    clock.now += 11
    assert rate_limit_hit("u", rate, now=clock) is None


def test_retry_after_is_at_least_a_second() -> None:
    clock, rate = Clock(), Rate(1, 1)
    assert rate_limit_hit("u", rate, now=clock) is None
    clock.now += 0.9999
    assert rate_limit_hit("u", rate, now=clock) == 1


def test_no_rate_means_no_limit() -> None:
    assert all(rate_limit_hit("u", None) is None for _ in range(100))
