"""The per-trace log store behind bug reports: bounded, per request, and
shared through the cache for requests that went wrong."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.http import HttpResponse

from imagineer_project import logcapture
from imagineer_project.logcapture import STORE, trace_persist, trace_records
from imagineer_project.middleware import TraceIdMiddleware
from imagineer_project.trace import reset_trace_id, set_trace_id

log = logging.getLogger("imagineer_project.tests.logcapture")


@pytest.fixture(autouse=True)
def _fresh(fresh_cache: None) -> None:
    """Each test starts with an empty cache and log store."""


def log_in_trace(trace_id: str, level: int, message: str, *args: Any) -> None:
    token = set_trace_id(trace_id)
    try:
        log.log(level, message, *args)
    finally:
        reset_trace_id(token)


def test_a_request_s_records_are_kept_under_its_trace_id() -> None:
    log_in_trace("trace-aaaa", logging.INFO, "loading album %s", 7)
    log_in_trace("trace-bbbb", logging.ERROR, "something else")

    records = trace_records("trace-aaaa")
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("INFO", "imagineer_project.tests.logcapture", "loading album 7")
    ]
    assert records[0]["time"].endswith("+00:00")


def test_records_outside_a_request_are_not_kept() -> None:
    log.warning("no request here")
    assert trace_records("-") == []
    assert STORE.get("-") is None


def test_each_trace_keeps_its_last_records_and_the_oldest_trace_goes_first(
    settings: Any,
) -> None:
    settings.BUG_REPORT_LOG_RECORDS = 3
    settings.BUG_REPORT_LOG_TRACES = 2
    for n in range(5):
        log_in_trace("trace-one1", logging.INFO, "line %s", n)
    log_in_trace("trace-two2", logging.INFO, "two")
    log_in_trace("trace-one1", logging.INFO, "line 5")  # one is used again
    log_in_trace("trace-three", logging.INFO, "three")  # two is the least recent

    assert [r["message"] for r in trace_records("trace-one1")] == [
        "line 3",
        "line 4",
        "line 5",
    ]
    assert trace_records("trace-two2") == []
    assert [r["message"] for r in trace_records("trace-three")] == ["three"]


def test_an_exception_is_in_the_message_without_server_paths(settings: Any) -> None:
    token = set_trace_id("trace-exc1")
    try:
        try:
            raise ValueError(f"bad file {settings.MEDIA_ROOT}/images/x.png")
        except ValueError:
            log.exception("upload failed")
    finally:
        reset_trace_id(token)

    (record,) = trace_records("trace-exc1")
    assert record["level"] == "ERROR"
    assert record["message"].startswith("upload failed\nTraceback")
    assert "ValueError: bad file <media>/images/x.png" in record["message"]
    assert str(settings.BASE_DIR) not in record["message"]


def test_a_long_message_keeps_its_start_and_end() -> None:
    log_in_trace("trace-long", logging.INFO, "start " + "x" * 10_000 + " end")
    (record,) = trace_records("trace-long")
    assert len(record["message"]) < logcapture.MAX_MESSAGE + 100
    assert record["message"].startswith("start ")
    assert record["message"].endswith(" end")
    assert "characters left out" in record["message"]


def test_a_failed_request_s_records_reach_another_process_through_the_cache() -> None:
    log_in_trace("trace-fail", logging.INFO, "about to fail")
    assert trace_persist("trace-fail", failed=True)
    STORE.clear()  # another process: nothing in its memory

    assert [r["message"] for r in trace_records("trace-fail")] == ["about to fail"]


def test_a_request_that_logged_a_warning_is_shared_and_a_quiet_one_is_not() -> None:
    log_in_trace("trace-warn", logging.WARNING, "disk is slow")
    log_in_trace("trace-calm", logging.INFO, "all fine")
    assert trace_persist("trace-warn", failed=False)
    assert not trace_persist("trace-calm", failed=False)
    STORE.clear()

    assert [r["message"] for r in trace_records("trace-warn")] == ["disk is slow"]
    assert trace_records("trace-calm") == []


def test_the_middleware_shares_the_records_of_a_request_that_warned(rf: Any) -> None:
    def view(request: Any) -> HttpResponse:
        log.warning("thumbnail missing for image %s", 3)
        return HttpResponse("ok")

    response = TraceIdMiddleware(view)(rf.get("/", HTTP_X_TRACE_ID="trace-mw01"))
    assert response["X-Trace-Id"] == "trace-mw01"
    STORE.clear()

    assert [r["message"] for r in trace_records("trace-mw01")] == [
        "thumbnail missing for image 3"
    ]


def test_the_middleware_does_not_share_a_quiet_request(rf: Any) -> None:
    def view(request: Any) -> HttpResponse:
        log.info("served")
        return HttpResponse("ok")

    TraceIdMiddleware(view)(rf.get("/", HTTP_X_TRACE_ID="trace-mw02"))
    STORE.clear()
    assert trace_records("trace-mw02") == []
