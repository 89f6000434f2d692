"""Log lines as production writes them: JSON with trace, user and run, and
nothing sensitive in them while IMAGINEER_LOG_REDACT is on.

The redaction tests run real code paths through the real logging config
(the console handler and the bug-report store of settings.LOGGING), once
with redaction on and once off: off, the distinctive strings do show, so the
tests would notice a redactor that masked nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils.functional import SimpleLazyObject

from imagineer_project.logcapture import STORE, trace_records
from imagineer_project.logformat import JsonFormatter
from imagineer_project.middleware import TraceIdMiddleware
from imagineer_project.testing import make_user
from imagineer_project.testing.fake_anthropic import tool_reply
from imagineer_project.testing.site import SiteHandler, serve_site
from imagineer_project.trace import reset_trace_id, set_trace_id

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("imagineer_project.tests.logs")
REDACT = pytest.mark.parametrize("redact", [True, False], ids=["redact", "plain"])


class Console:
    """What the console handler wrote (JSON lines) and the bug-report store."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def text(self, *trace_ids: str) -> str:
        stored = [trace_records(trace_id) for trace_id in trace_ids]
        return self.stream.getvalue() + json.dumps(stored, ensure_ascii=False)

    def line(self, logger: str, start: str) -> dict[str, Any]:
        return next(
            line
            for line in self.lines()
            if line["logger"] == logger and line["message"].startswith(start)
        )


@pytest.fixture
def console(settings: Any) -> Iterator[Console]:
    """The real console handler, writing JSON into a buffer for the test."""
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    stream = io.StringIO()
    formatter = handler.formatter
    previous = handler.setStream(stream)
    handler.setFormatter(JsonFormatter())
    STORE.clear()
    try:
        yield Console(stream)
    finally:
        handler.setStream(previous)
        handler.setFormatter(formatter)
        STORE.clear()


@contextlib.contextmanager
def level(name: str, value: int) -> Iterator[None]:
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(value)
    try:
        yield
    finally:
        logger.setLevel(before)


def shows(text: str, *secrets: str) -> list[bool]:
    return [secret in text for secret in secrets]


# --- redaction on real code paths ---------------------------------------------------


@REDACT
@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_a_generation_s_prompts_stay_out_of_the_logs(
    console: Console, settings: Any, tiny_base: Path, redact: bool
) -> None:
    from training.generation.services import generation_job_create
    from training.tests.builders import run_job, small_request

    settings.LOG_REDACT = redact
    settings.GENERATION_BASE_MODEL = str(tiny_base)
    settings.GENERATION_DEVICE = "cpu"
    cache.clear()
    request = small_request(
        prompt="a zorblaxian meadow", negative_prompt="quuxfrobbed", num_images=1
    )
    job = run_job(generation_job_create(request=request, enqueue=False))

    assert job.status == "succeeded", job.error
    text = console.text()
    assert shows(text, "zorblaxian", "quuxfrobbed") == [not redact, not redact]
    line = console.line("training.generation.runs", f"Generation {job.pk}: render")
    assert line["run"] == f"generationjob:{job.pk}"
    assert line["trace_id"] is None and line["user_id"] is None
    if redact:
        assert (line["prompt"], line["negative_prompt"]) == ("[redacted]",) * 2


@REDACT
@pytest.mark.django_db
def test_a_labeling_job_s_captions_stay_out_of_the_logs(
    console: Console, settings: Any, fake_anthropic: Any, redact: bool
) -> None:
    from albums.tests.builders import make_album, make_image
    from imagineer_project.runs import run_execute
    from labeling.models import LabelingJob
    from labeling.runs import labeling_job_execute
    from labeling.services import labeling_job_create

    settings.LOG_REDACT = redact
    album = make_album()
    make_image(album=album, seed=1)
    fake_anthropic.default = tool_reply("a glimmerwick tarot card")
    job = labeling_job_create(album=album, budget_usd=None, enqueue=False)
    with level("labeling", logging.DEBUG):
        run_execute(LabelingJob, job.pk, labeling_job_execute)

    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert shows(console.text(), "glimmerwick") == [not redact]
    line = console.line("labeling.runner", "Labeled image")
    assert line["run"] == f"labelingjob:{job.pk}"


@REDACT
@pytest.mark.django_db
def test_a_refused_request_s_token_cookie_and_query_stay_out_of_the_logs(
    console: Console, client: Any, settings: Any, redact: bool
) -> None:
    settings.LOG_REDACT = redact
    response = client.get(
        "/api/albums?sig=querysecretqq",
        HTTP_AUTHORIZATION="Bearer imt_tokensecretqq",
        HTTP_COOKIE="sessionid=cookiesecretqq; csrftoken=csrfsecretqq",
    )

    assert response.status_code == 401
    line = console.line("django.request", "Unauthorized: /api/albums")
    assert line["level"] == "WARNING"
    text = console.text()
    # django.request's line names the request, query string included.
    assert shows(text, "querysecretqq") == [not redact]
    assert shows(text, "tokensecretqq", "cookiesecretqq", "csrfsecretqq") == [False] * 3
    # Logged after the middleware returned, yet under the request's trace id.
    assert line["trace_id"] == response["X-Trace-Id"]


@REDACT
def test_keys_passwords_headers_extras_and_exceptions_are_masked(
    console: Console, settings: Any, redact: bool
) -> None:
    settings.LOG_REDACT = redact
    token = set_trace_id("trace-logs-redact")
    try:
        log.warning("Key %s, password=%s", "sk-ant-api03-keysecretqq", "pwsecretqq")
        headers = {
            "Authorization": "Bearer imt_tokensecretqq",
            "Cookie": "sessionid=cookiesecretqq",
        }
        log.warning("Headers %s", headers)
        log.warning('Body {"password": "jsonpwqq", "caption": "a lumenquill"}')
        log.warning(
            "Asked", extra={"prompt": "xtrapromptqq", "form": {"password": "formpwqq"}}
        )
        try:
            raise ValueError("GET https://cdn.example/a.png?sig=excsecretqq failed")
        except ValueError:
            log.exception("Fetch failed for prompt=a moonlit excpromptqq")
    finally:
        reset_trace_id(token)

    secrets = [
        "keysecretqq",
        "pwsecretqq",
        "tokensecretqq",
        "cookiesecretqq",
        "jsonpwqq",
        "lumenquill",
        "xtrapromptqq",
        "formpwqq",
        "excsecretqq",
        "excpromptqq",
    ]
    # The console and the bug-report store (this trace's records) alike.
    text = console.text("trace-logs-redact")
    assert shows(text, *secrets) == [not redact] * len(secrets)
    if redact:
        failed = console.line("imagineer_project.tests.logs", "Fetch failed")
        assert failed["message"] == "Fetch failed for prompt=[redacted]"
        assert "https://cdn.example/a.png?[redacted] failed" in failed["exc_info"]
        stored = trace_records("trace-logs-redact")
        assert stored[0]["message"] == "Key sk-ant-[redacted], password=[redacted]"
        assert stored[1]["message"] == (
            "Headers {'Authorization': '[redacted]', 'Cookie': '[redacted]'}"
        )


class _Failing(SiteHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()


@REDACT
def test_a_failing_scrape_url_s_query_stays_out_of_the_logs(
    console: Console, settings: Any, redact: bool
) -> None:
    from scraping.safe_fetch import FetchError, SafeFetcher

    settings.LOG_REDACT = redact

    async def fetch(url: str) -> None:
        fetcher = SafeFetcher(
            allow_private=True, respect_robots=False, retries=1, politeness_delay=0
        )
        async with fetcher:
            await fetcher.fetch(url)

    with (
        serve_site(_Failing, settings) as base,
        level("scraping", logging.DEBUG),
        pytest.raises(FetchError),
    ):
        asyncio.run(fetch(f"{base}/gallery?sig=scrapesecretqq"))

    line = console.line("scraping.safe_fetch", "GET http://127.0.0.1")
    assert line["level"] == "DEBUG"
    assert shows(console.text(), "scrapesecretqq") == [not redact]
    if redact:
        assert line["message"] == f"GET {base}/gallery?[redacted] -> 500"


# --- the JSON line ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_json_line_names_its_request_s_trace_and_signed_in_user(
    console: Console,
) -> None:
    user = make_user()

    def view(request: Any) -> HttpResponse:
        log.info("before the user is known")
        request.user = SimpleLazyObject(lambda: user)
        assert request.user.is_authenticated  # authentication loads it
        log.info("after")
        return HttpResponse("ok")

    request = RequestFactory().get("/", HTTP_X_TRACE_ID="trace-logs-json")
    TraceIdMiddleware(view)(request)
    log.info("outside")

    lines = [line for line in console.lines() if line["logger"] == log.name]
    assert [list(line)[:7] for line in lines] == [
        ["time", "level", "logger", "message", "trace_id", "user_id", "run"]
    ] * 3
    assert [(line["trace_id"], line["user_id"], line["run"]) for line in lines] == [
        ("trace-logs-json", None, None),
        ("trace-logs-json", user.pk, None),
        (None, None, None),
    ]
    assert lines[0]["time"].endswith("+00:00") and lines[0]["level"] == "INFO"


# --- the settings, from the environment ----------------------------------------------

PROBE = """
import logging, django
django.setup()
from imagineer_project.logging import log_run
with log_run("scrapejob:7"):
    logging.getLogger("scraping.crawler").debug("crawler detail, password=probepwqq")
logging.getLogger("albums.services").debug("albums detail")
logging.getLogger("albums.services").info("albums info")
logging.getLogger("django.db.backends").info("db info")
"""


def boot(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    full = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagineer_project.settings",
        "IMAGINEER_VAR_DIR": str(tmp_path / "var"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_environment_sets_format_redaction_and_per_logger_levels(
    tmp_path: Path,
) -> None:
    result = boot(
        {
            "IMAGINEER_LOG_FORMAT": "json",
            "IMAGINEER_LOG_REDACT": "1",
            "IMAGINEER_LOG_LEVELS": "scraping=DEBUG,django.db=WARNING",
        },
        tmp_path,
    )

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["logger"], line["level"], line["message"]) for line in lines] == [
        ("scraping.crawler", "DEBUG", "crawler detail, password=[redacted]"),
        ("albums.services", "INFO", "albums info"),
    ]
    assert lines[0]["run"] == "scrapejob:7"


def test_the_text_format_keeps_its_line(tmp_path: Path) -> None:
    result = boot(
        {"IMAGINEER_LOG_FORMAT": "text", "IMAGINEER_LOG_REDACT": "0"}, tmp_path
    )

    assert result.returncode == 0, result.stderr
    ours = [line for line in result.stderr.splitlines() if "albums" in line]
    assert len(ours) == 1
    assert ours[0].endswith(" INFO albums.services [trace=-] albums info")


def test_a_malformed_level_entry_refuses_to_boot(tmp_path: Path) -> None:
    result = boot({"IMAGINEER_LOG_LEVELS": "scraping"}, tmp_path)

    assert result.returncode != 0
    assert "IMAGINEER_LOG_LEVELS entries read logger=LEVEL" in result.stderr
