"""render_page in a real Chromium against a site served on 127.0.0.1 by the test.

The site is on loopback, so the fixtures allow private addresses, as an operator
would with SCRAPER_ALLOW_PRIVATE_ADDRESSES; test_browser_egress covers refusals.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from imagineer_project.runs import BaseRun
from imagineer_project.testing import make_image_bytes, require_chromium, site
from scraping.extract import ImageCandidate, extract_page
from scraping.models import CrawlLogEntry
from scraping.render import (
    MAX_REDIRECTS,
    FailedRequest,
    RenderError,
    render_page,
)
from scraping.services import scrape_job_create
from scraping.tasks import run_scrape_job

pytestmark = pytest.mark.browser

GALLERY = """<!doctype html>
<html><head><title>Tarot deck</title></head>
<body>
<h1>Major arcana</h1>
<div id="gallery"></div>
<img src="/blocked/secret.png" alt="Refused by the guard">
<img src="/hop" alt="Redirects to a refused URL">
<img src="/loop" alt="Redirects to itself">
<div style="height: 4000px"></div>
<img id="lazy" data-src="/img/lazy.png" alt="Below the fold">
<script>
window.addEventListener("load", () => setTimeout(() => {
  for (const [name, caption] of [["fool", "The Fool"], ["magician", "The Magician"]]) {
    const figure = document.createElement("figure");
    figure.innerHTML = `<img src="/img/${name}.png" alt="${caption}">`
      + `<figcaption>${caption}, trump card</figcaption>`;
    document.getElementById("gallery").append(figure);
  }
}, 300));
new IntersectionObserver((entries, observer) => {
  for (const entry of entries.filter(e => e.isIntersecting)) {
    entry.target.src = entry.target.dataset.src;
    observer.unobserve(entry.target);
  }
}).observe(document.getElementById("lazy"));
try { new WebSocket(`ws://${location.host}/socket`); } catch (e) {}
</script>
</body></html>"""

# Needs JavaScript (an empty body that a script fills), with two images that fail.
BROKEN = """<!doctype html>
<html><head><title>Broken</title></head><body><div id="cards"></div>
<script>
document.getElementById("cards").innerHTML =
  '<img src="/missing.png" alt="Not there"><img src="{gone}" alt="Nobody home">'
  + '<img src="/img/hermit.png" alt="The Hermit">';
</script></body></html>"""

REDIRECTS = {
    "/start": "/gallery",
    "/hop": "/blocked/redirected.png",
    "/to-blocked": "/blocked/page",
    "/loop": "/loop",
}


class SiteHandler(site.SiteHandler):
    server: SiteServer

    def do_GET(self) -> None:
        self.server.requested.append(self.path)
        if self.path in REDIRECTS:
            self.send_response(302)
            self.send_header("Location", REDIRECTS[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/hang":
            self.server.release.wait(10)  # never answers while the test runs
        elif self.path == "/gallery":
            self.answer(GALLERY.encode(), "text/html; charset=utf-8")
        elif self.path == "/broken":
            page = BROKEN.replace("{gone}", self.server.gone_url)
            self.answer(page.encode(), "text/html; charset=utf-8")
        elif self.path.startswith("/img/"):
            self.answer(make_image_bytes("PNG", (200, 300), seed=1), "image/png")
        else:
            self.send_error(404)


class SiteServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SiteHandler)
        self.requested: list[str] = []
        self.release = threading.Event()
        self.gone_url = f"http://127.0.0.1:{closed_port()}/gone.png"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Site:
    url: str
    requested: list[str]
    gone_url: str


@pytest.fixture
def chromium() -> str:
    return require_chromium()


@pytest.fixture
def site(settings: Any) -> Iterator[Site]:
    settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES = True  # the egress proxy's policy
    server = SiteServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(
            f"http://127.0.0.1:{server.server_port}", server.requested, server.gone_url
        )
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def refuse_blocked(url: str) -> str | None:
    return "blocked path" if "/blocked/" in url else None


def test_render_runs_scripts_scrolls_and_keeps_refused_requests_off_the_wire(
    chromium: str, site: Site
) -> None:
    result = render_page(f"{site.url}/start", guard=refuse_blocked, timeout=15)

    assert result.url == f"{site.url}/gallery"
    assert result.status == 200
    by_url = {c.url: c for c in extract_page(result.html, result.url).images}
    assert [
        by_url.get(f"{site.url}/img/{name}.png") for name in ("fool", "magician")
    ] == [
        ImageCandidate(
            url=f"{site.url}/img/fool.png",
            source="img",
            alt="The Fool",
            figcaption="The Fool, trump card",
            context="Major arcana",
            page_title="Tarot deck",
        ),
        ImageCandidate(
            url=f"{site.url}/img/magician.png",
            source="img",
            alt="The Magician",
            figcaption="The Magician, trump card",
            context="Major arcana",
            page_title="Tarot deck",
        ),
    ]
    assert "/img/lazy.png" in site.requested  # set by the IntersectionObserver
    assert site.requested.count("/loop") == 1 + MAX_REDIRECTS
    assert [p for p in site.requested if "/blocked/" in p or p == "/socket"] == []
    # Requests run in parallel, so the order of refusals is not fixed.
    assert sorted(result.blocked) == [
        f"{site.url}/blocked/redirected.png",
        f"{site.url}/blocked/secret.png",
        site.url.replace("http://", "ws://") + "/socket",
    ]


def test_a_redirect_to_a_refused_page_fails_without_requesting_it(
    chromium: str, site: Site
) -> None:
    with pytest.raises(RenderError) as caught:
        render_page(f"{site.url}/to-blocked", guard=refuse_blocked, timeout=10)

    assert caught.value.reason == f"refused {site.url}/blocked/page: blocked path"
    assert site.requested == ["/to-blocked"]


def test_a_refused_start_url_fails_before_any_request(site: Site) -> None:
    with pytest.raises(RenderError) as caught:
        render_page(f"{site.url}/blocked/", guard=refuse_blocked)

    assert caught.value.reason == "refused: blocked path"
    assert site.requested == []


def test_a_page_that_never_answers_fails_within_the_timeout(
    chromium: str, site: Site
) -> None:
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render_page(f"{site.url}/hang", guard=refuse_blocked, timeout=2)

    # "timed out starting Chromium" on a machine too busy to start it in time.
    assert caught.value.reason.startswith("timed out")
    assert time.monotonic() - started < 5


def test_failed_subresources_are_reported_with_why(chromium: str, site: Site) -> None:
    result = render_page(f"{site.url}/broken", guard=refuse_blocked, timeout=15)

    gone = site.gone_url.removesuffix("/gone.png").removeprefix("http://")
    assert set(result.failed) == {
        FailedRequest(site.gone_url, "image", f"cannot connect to {gone}"),
        FailedRequest(f"{site.url}/missing.png", "image", "HTTP 404"),
    }
    assert "/img/hermit.png" in site.requested


def test_an_address_refused_at_connect_time_is_never_dialled(
    chromium: str, site: Site, settings: Any
) -> None:
    # The route check lets everything through, as it would a host that resolved
    # to a public address and then rebinds to loopback; the egress proxy, which
    # resolves again and dials only what it checked, still refuses.
    settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES = False

    with pytest.raises(RenderError) as caught:
        render_page(f"{site.url}/gallery", guard=lambda _url: None, timeout=10)

    assert caught.value.reason == (
        f"refused {site.url}/gallery: 127.0.0.1 is a private or loopback address "
        "(SCRAPER_ALLOW_PRIVATE_ADDRESSES allows it)"
    )
    assert site.requested == []


@pytest.mark.django_db
def test_the_crawl_log_names_the_failed_subresources_of_a_rendered_page(
    chromium: str, site: Site
) -> None:
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API
    try:
        job = scrape_job_create(
            url=f"{site.url}/broken",
            album_name="Broken",
            enqueue=False,
            politeness_delay=0,
            render="always",
        )
        run_scrape_job(job.pk)
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)

    job.refresh_from_db()
    assert job.status == BaseRun.Status.SUCCEEDED
    failed = job.log.filter(
        kind=CrawlLogEntry.Kind.PAGE, outcome=CrawlLogEntry.Outcome.FAILED
    )
    gone = site.gone_url.removesuffix("/gone.png").removeprefix("http://")
    assert set(failed.values_list("url", "page_url", "reason")) == {
        (
            site.gone_url,
            f"{site.url}/broken",
            f"browser image request failed: cannot connect to {gone}",
        ),
        (
            f"{site.url}/missing.png",
            f"{site.url}/broken",
            "browser image request failed: HTTP 404",
        ),
    }
