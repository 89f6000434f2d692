"""What a scrape finds on real pages served from loopback: the picture a person
sees (and nothing else), every caption of it, and a crawl log that tells the
truth. One page per pattern; the server records every request it answers."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image as PILImage

from albums.models import Image
from imagineer_project.runs import BaseRun
from imagineer_project.testing import make_image_bytes
from imagineer_project.testing.site import SiteHandler, serve_site
from scraping.models import CrawlLogEntry, ScrapeJob
from scraping.tasks import run_scrape_job
from scraping.tests.builders import scrape_now

pytestmark = pytest.mark.django_db


def _preview(data: bytes, size: tuple[int, int] = (24, 16)) -> bytes:
    """A blur-up preview: the same picture, tiny."""
    with PILImage.open(io.BytesIO(data)) as im:
        buf = io.BytesIO()
        im.resize(size).save(buf, "JPEG", quality=40)
        return buf.getvalue()


FULL = {
    name: make_image_bytes("JPEG", (480, 360), seed=300 + n)
    for n, name in enumerate("abcde")
}
IMAGES = {
    # <picture>: a narrow-screen crop in a <source>, the whole picture in the img.
    "/img/harbour-crop.jpg": make_image_bytes("JPEG", (300, 400), seed=201),
    "/img/harbour.jpg": make_image_bytes("JPEG", (640, 400), seed=202),
    # <style> backgrounds: one photo, one banner strip the aspect filter drops.
    "/img/hero.jpg": make_image_bytes("JPEG", (600, 400), seed=203),
    "/img/strip.jpg": make_image_bytes("JPEG", (1200, 200), seed=204),
    "/img/lighthouse.jpg": make_image_bytes("JPEG", (400, 500), seed=205),
    # <object>
    "/img/diagram.png": make_image_bytes("PNG", (500, 300), seed=206),
    # Names that sound like UI, pictures that are content.
    "/img/logo-mug.jpg": make_image_bytes("JPEG", (400, 400), seed=207),
    "/img/logo-tee.jpg": make_image_bytes("JPEG", (420, 380), seed=208),
    "/img/site-logo.png": make_image_bytes("PNG", (180, 60), seed=209),
    **{f"/img/full-{k}.jpg": v for k, v in FULL.items()},
    **{f"/img/tiny-{k}.jpg": _preview(v) for k, v in FULL.items()},
}
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300"></svg>'
PAGES = {
    "/picture.html": """<title>Harbour</title>
      <picture>
        <source media="(max-width: 799px)" srcset="/img/harbour-crop.jpg 480w">
        <img src="/img/harbour.jpg" alt="The harbour at dusk">
      </picture>""",
    "/styles.html": """<title>Styled</title><style>
        .hero { background-image: url("/img/hero.jpg"); }
        .strip{background:#000 url(/img/strip.jpg) no-repeat}
        @font-face { font-family: x; src: url(/fonts/x.woff2) format("woff2"); }
      </style><div class="hero"></div><div class="strip"></div>""",
    "/captions.html": """<title>Lighthouse</title>
      <figure><img src="/img/lighthouse.jpg" alt="Lighthouse at noon">
        <figcaption>The old lighthouse</figcaption></figure>
      <a href="/img/lighthouse.jpg" title="Full-size lighthouse">
        <img src="/img/lighthouse.jpg" alt="Lighthouse, full size"></a>
      <figure><img src="/img/lighthouse.jpg" alt="Lighthouse at noon">
        <figcaption>Built in 1881</figcaption></figure>
      <a href="/captions-2.html">more</a>""",
    "/captions-2.html": """<title>Pier</title>
      <img src="/img/lighthouse.jpg" alt="Lighthouse from the pier">""",
    "/lazy.html": """<title>Lazy</title>
      <img class="lazyload" src="/img/tiny-a.jpg" alt="Fox">
      <noscript><img src="/img/full-a.jpg" alt="Fox"></noscript>
      <div class="progressive" data-large="/img/full-b.jpg"
           style="background-image: url(/img/tiny-b.jpg)"></div>
      <img src="/img/tiny-c.jpg" data-src="/img/full-c.jpg" alt="Owl">
      <a class="progressive replace" data-original="/img/full-d.jpg">
        <img src="/img/tiny-d.jpg" class="preview" alt="Deer"></a>
      <figure data-src="/img/full-e.jpg"><img src="/img/tiny-e.jpg" alt="Heron">
      </figure>""",
    "/object.html": """<title>Objects</title>
      <object data="/img/diagram.png" type="image/png">A diagram</object>
      <object data="/img/vector.svg" type="image/svg+xml"></object>
      <object data="/movie.swf" type="application/x-shockwave-flash"></object>""",
    "/hostile.html": """<title>Hostile</title>
      <img src="http://xn--/broken-label.jpg" alt="A malformed host name">
      <img src="/img/harbour.jpg" alt="The harbour at dusk">""",
    "/logos.html": """<title>Shop</title>
      <header><a href="/"><img src="/img/site-logo.png" alt="Acme"></a></header>
      <img src="/img/logo-mug.jpg" width="400" height="400"
           alt="A white ceramic mug printed with our logo">
      <img src="/img/logo-tee.jpg"
           alt="An organic cotton t-shirt with the logo on the front">
      <img src="/img/vector.svg" alt="A vector drawing">""",
}


class Site(SiteHandler):
    requests: list[str] = []
    robots: bytes | None = None  # None: robots.txt answers 404
    robots_status: int | None = None  # an HTTP status for robots.txt instead

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        Site.requests.append(self.path)
        if self.path == "/robots.txt" and Site.robots_status is not None:
            self.send_response(Site.robots_status)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if self.path == "/robots.txt" and Site.robots is not None:
            return self.answer(Site.robots, "text/plain")
        if self.path in PAGES:
            html = f"<html><head></head><body>{PAGES[self.path]}</body></html>"
            return self.answer(html.encode(), "text/html; charset=utf-8")
        if self.path in IMAGES:
            return self.answer(IMAGES[self.path], "image/jpeg")
        if self.path == "/img/vector.svg":
            return self.answer(SVG, "image/svg+xml")
        self.send_error(404)
        return None


@pytest.fixture
def site(settings: Any) -> Iterator[str]:
    Site.requests = []
    Site.robots = None
    Site.robots_status = None
    with serve_site(Site, settings) as url:
        yield url


def scrape(url: str, **options: Any) -> ScrapeJob:
    defaults = {"album_name": "Found", "render": "never", "max_depth": 1}
    return scrape_now(url, **defaults | options)


def saved(job: ScrapeJob) -> set[str]:
    return set(job.album.images.values_list("original_filename", flat=True))


def image_log(job: ScrapeJob) -> dict[str, tuple[str, str]]:
    return {
        e.url.rsplit("/", 1)[-1]: (e.outcome, e.reason)
        for e in job.log.filter(kind=CrawlLogEntry.Kind.IMAGE)
    }


def labels(name: str) -> set[tuple[str, str]]:
    image = Image.objects.get(original_filename=name)
    return set(image.labels.filter(source="html").values_list("kind", "text"))


# --- discovery --------------------------------------------------------------------


def test_a_picture_gives_the_imgs_own_image_not_a_narrow_screen_crop(
    site: str,
) -> None:
    job = scrape(site + "/picture.html")

    assert saved(job) == {"harbour.jpg"}
    assert "/img/harbour-crop.jpg" not in Site.requests


def test_style_blocks_name_backgrounds_subject_to_the_filters(site: str) -> None:
    job = scrape(site + "/styles.html")

    assert saved(job) == {"hero.jpg"}
    log = image_log(job)
    assert log["strip.jpg"][0] == "invalid"  # 6:1 is over the aspect limit
    assert "aspect" in log["strip.jpg"][1]
    assert "/fonts/x.woff2" not in Site.requests  # a font is no background


def test_an_image_named_by_several_elements_keeps_every_caption(site: str) -> None:
    scrape(site + "/captions.html")

    texts = labels("lighthouse.jpg")
    assert {
        ("alt_text", "Lighthouse at noon"),
        ("alt_text", "Lighthouse, full size"),
        ("alt_text", "Lighthouse from the pier"),  # on the second page
        ("figcaption", "The old lighthouse"),
        ("figcaption", "Built in 1881"),
        ("title", "Full-size lighthouse"),
    } <= texts
    alts = [text for kind, text in texts if kind == "alt_text"]
    assert len(alts) == len(set(alts)) == 3
    assert Site.requests.count("/img/lighthouse.jpg") == 1


def test_blur_up_and_lazy_patterns_fetch_the_full_image_only(site: str) -> None:
    job = scrape(site + "/lazy.html")

    assert saved(job) == {f"full-{k}.jpg" for k in "abcde"}
    asked = [path for path in Site.requests if "/tiny-" in path]
    assert asked == []
    assert ("alt_text", "Deer") in labels("full-d.jpg")
    assert ("alt_text", "Heron") in labels("full-e.jpg")


def test_an_object_of_an_image_type_is_an_image(site: str) -> None:
    job = scrape(site + "/object.html")

    assert saved(job) == {"diagram.png"}
    assert ("alt_text", "A diagram") in labels("diagram.png")
    assert image_log(job)["vector.svg"] == ("skipped", "not a raster image (SVG)")
    assert "/movie.swf" not in Site.requests


def test_ui_assets_are_judged_by_size_and_context_and_say_why(site: str) -> None:
    job = scrape(site + "/logos.html")

    assert {"logo-mug.jpg", "logo-tee.jpg"} <= saved(job)
    log = image_log(job)
    assert log["site-logo.png"][0] == "skipped"
    assert "logo" in log["site-logo.png"][1]
    assert log["vector.svg"] == ("skipped", "not a raster image (SVG)")
    assert "/img/vector.svg" not in Site.requests


def test_an_image_url_no_client_can_parse_is_refused_not_a_crash(site: str) -> None:
    job = scrape(site + "/hostile.html")

    assert job.status == BaseRun.Status.SUCCEEDED
    assert saved(job) == {"harbour.jpg"}
    outcome, reason = image_log(job)["broken-label.jpg"]
    assert outcome == "blocked"
    assert reason.startswith("invalid URL")


# --- the crawl log ----------------------------------------------------------------


def test_a_missing_robots_txt_reads_as_all_allowed(site: str) -> None:
    job = scrape(site + "/picture.html")

    robots = job.log.get(kind=CrawlLogEntry.Kind.ROBOTS)
    assert robots.reason.startswith("no robots.txt (HTTP 404): all allowed")
    assert (robots.outcome, robots.status_code) == ("skipped", 404)


def test_a_robots_txt_that_says_slow_down_is_no_permission(site: str) -> None:
    """429 is a 4xx but not an absent robots.txt: nothing is crawled, and the
    job says why instead of reading it as 'all allowed'."""
    Site.robots_status = 429
    job = scrape(site + "/picture.html")
    assert job.status == "failed"
    assert "HTTP 429" in job.error
    assert Site.requests == ["/robots.txt"] * Site.requests.count("/robots.txt")


def test_a_robots_txt_that_was_read_says_so(site: str) -> None:
    Site.robots = b"User-agent: *\nDisallow: /private/\n"
    job = scrape(site + "/picture.html")

    robots = job.log.get(kind=CrawlLogEntry.Kind.ROBOTS)
    assert robots.outcome == "fetched"
    assert robots.reason.startswith("robots.txt read and honoured")


# --- a refused start URL ------------------------------------------------------------


def failed_job(start_url: str) -> ScrapeJob:
    # Made directly, as a job queued before the address changed would be:
    # the crawler must refuse it on its own.
    job = ScrapeJob.objects.create(
        start_url=start_url, album_name="Refused", politeness_delay=0, render="never"
    )
    run_scrape_job(job.pk)
    job.refresh_from_db()
    return job


def test_a_start_url_at_a_refused_address_fails_the_job(
    site: str, settings: Any
) -> None:
    settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES = False

    job = failed_job(site + "/picture.html")

    assert job.status == BaseRun.Status.FAILED
    assert "private or loopback" in job.error
    assert "refused" in job.error.lower()
    assert Site.requests == []


def test_a_start_host_that_resolves_to_a_private_address_is_blocked_not_robots(
    site: str, settings: Any
) -> None:
    host = socket.gethostname()
    try:
        address = socket.getaddrinfo(host, 80)[0][4][0]
    except OSError:
        pytest.skip("this machine's name does not resolve")
    if not address.startswith("127."):
        pytest.skip("this machine's name is not a loopback name")
    settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES = False
    port = site.rsplit(":", 1)[1]

    job = failed_job(f"http://{host}:{port}/picture.html")

    assert job.status == BaseRun.Status.FAILED
    assert "robots" not in job.error
    assert f"{host} resolves to" in job.error
    entry = job.log.get(kind=CrawlLogEntry.Kind.PAGE)
    assert entry.outcome == "blocked"
    assert f"{host} resolves to" in entry.reason
    assert Site.requests == []


def test_a_start_url_robots_txt_disallows_fails_the_job(site: str) -> None:
    Site.robots = b"User-agent: *\nDisallow: /\n"

    job = failed_job(site + "/picture.html")

    assert job.status == BaseRun.Status.FAILED
    assert "disallowed by robots.txt" in job.error
    assert Site.requests == ["/robots.txt"]


def test_a_start_host_that_does_not_resolve_fails_the_job() -> None:
    job = failed_job("http://no-such-host.invalid/gallery/")

    assert job.status == BaseRun.Status.FAILED
    assert "no-such-host.invalid" in job.error
    assert "resolving no-such-host.invalid failed" in job.error
    assert "robots" not in job.error
    assert "Error(" not in job.error  # no Python repr
