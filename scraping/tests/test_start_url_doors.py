"""Every door that starts a scrape (API, CLI, admin) refuses the same start URLs,
up front, with a clear reason: no door queues a job the crawler could never
start, and no URL makes a door crash."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from scraping.models import ScrapeJob

pytestmark = pytest.mark.django_db

JOBS = "/api/scrape-jobs"
REFUSED = [
    "http://127.0.0.1/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://[::ffff:127.0.0.1]/",
    "  http://127.0.0.1/  ",
    "http://user@127.0.0.1/",
    "http://localhost./",
    "http://foo.localhost/",
    "http://169.254.169.254/latest/",
    "http://0/",
    "http://%31%32%37.0.0.1/",
    "http://[fe80::1]/",
    "http://example.com\\@127.0.0.1/",
    "http://１２７.０.０.１/",
    "ftp://example.com/",
    "javascript:alert(1)",
    "//example.com/",
    "http://exa mple.com/",
    "http://[::1/",
    # Not URLs any client can fetch: refused up front, not failed later.
    "http://xn--/",
    "http://example.com:99999/",
    "http://example.com:0/",
    "http://.example.com/",
    "http://example..com/",
]
QUEUED = [
    "https://cards.example/gallery",
    "http://127.0.0.1:80@cards.example/",  # the host is cards.example
    "https://cards.example:8443/a?b=c",
]


def api_status(client: Any, url: str) -> tuple[int, dict[str, Any]]:
    response = client.post(
        JOBS,
        json.dumps({"url": url, "album_name": "Doors"}),
        content_type="application/json",
    )
    return response.status_code, response.json()


def cli_refusal(url: str) -> str | None:
    try:
        call_command("scrape", url, album="Doors", enqueue=True)
    except CommandError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("url", REFUSED)
def test_the_api_and_the_cli_refuse_the_same_start_urls_up_front(
    call_as: Any, settings: Any, url: str
) -> None:
    settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES = False

    status, body = api_status(call_as("staff"), url)
    refusal = cli_refusal(url)

    assert status == 422, body
    assert "url" in json.dumps(body["details"])
    assert refusal is not None and refusal.startswith("Refusing")
    assert "object at 0x" not in refusal + json.dumps(body)
    assert not ScrapeJob.objects.exists()


@pytest.mark.parametrize("url", QUEUED)
def test_the_api_and_the_cli_queue_the_same_start_urls(
    call_as: Any, settings: Any, url: str
) -> None:
    settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES = False

    status, body = api_status(call_as("staff"), url)
    refusal = cli_refusal(url)

    assert status == 201, body
    assert refusal is None
    assert ScrapeJob.objects.count() == 2
