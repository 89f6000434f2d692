"""The whole scrape against a local test site, with real Chromium for the page
that builds its gallery with JavaScript."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from albums.models import Image
from imagineer_project.runs import BaseRun
from imagineer_project.testing import make_image_bytes, require_chromium, smaller_copy
from imagineer_project.testing.site import SiteHandler, serve_site
from labeling.models import Label
from scraping.models import CrawlLogEntry, ScrapeJob
from scraping.services import scrape_job_create
from scraping.tasks import run_scrape_job
from scraping.tests.builders import scrape_now

pytestmark = [pytest.mark.django_db, pytest.mark.browser]

PIXEL = "data:image/gif;base64,R0lGODlhAQABAAAAACw="


FOOL = make_image_bytes("JPEG", (480, 360), seed=101)
IMAGES = {
    "/img/fool.jpg": FOOL,
    "/img/fool-small.jpg": smaller_copy(FOOL),  # a re-encoded near duplicate
    "/img/magician-small.jpg": make_image_bytes("JPEG", (160, 120), seed=102),
    "/img/magician-large.jpg": make_image_bytes("JPEG", (640, 480), seed=102),
    "/img/priestess.jpg": make_image_bytes("JPEG", (400, 300), seed=103),
    "/img/empress.png": make_image_bytes("PNG", (300, 400), seed=104),
    "/img/tower.jpg": make_image_bytes("JPEG", (420, 320), seed=105),
    "/img/icon-home.png": make_image_bytes("PNG", (16, 16), seed=106),
    "/img/broken.jpg": make_image_bytes("JPEG", (400, 300), seed=107)[:300],
    "/img/fake.jpg": b"this is a text file pretending to be a JPEG\n" * 20,
}
PAGES = {
    "/": """<html><head><title>Tarot Collection</title></head><body>
      <h1>Major Arcana</h1>
      <a href="/gallery/major.html">Gallery</a> <a href="/js-gallery.html">Live</a>
      <a href="/private/secret.html">Staff only</a>
      <a href="https://offsite.example.com/page">Elsewhere</a>
      <a href="javascript:alert(1)">Click</a>
      <img src="/img/icon-home.png" width="16" height="16" alt="home">
      <figure><img src="/img/fool.jpg" alt="The Fool">
        <figcaption>0 - The Fool</figcaption></figure>
      <img src="/img/magician-small.jpg" alt="The Magician"
           srcset="/img/magician-small.jpg 160w, /img/magician-large.jpg 640w">
    </body></html>""",
    "/gallery/major.html": f"""<html><head><title>Major gallery</title>
      <script type="application/ld+json">{
        json.dumps(
            {
                "@context": "https://schema.org",
                "@type": "ImageObject",
                "contentUrl": "/img/empress.png",
                "caption": "III - The Empress",
            }
        )
    }</script>
      </head><body><h2>The High Priestess</h2>
      <img src="{PIXEL}" data-src="/img/priestess.jpg" alt="The High Priestess">
      <img src="/img/fool-small.jpg" alt="The Fool (small)">
      <img src="/img/fake.jpg" alt="fake"> <img src="/img/broken.jpg" alt="broken">
      <img src="/img/redirect.jpg" alt="metadata"> <img src="/img/slow.jpg" alt="slow">
      <a href="/">Home</a></body></html>""",
    "/js-gallery.html": """<html><head><title>Live gallery</title></head><body>
      <div id="root"></div>
      <script>setTimeout(function () {
        document.getElementById('root').innerHTML =
          '<figure><img src="/img/tower.jpg" alt="The Tower">' +
          '<figcaption>XVI - The Tower</figcaption></figure>';
      }, 200);</script></body></html>""",
    "/private/secret.html": "<html><body><img src='/img/tower.jpg'></body></html>",
}


class TarotSite(SiteHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        TarotSite.requests.append(self.path)
        if self.path == "/robots.txt":
            return self.answer(b"User-agent: *\nDisallow: /private/\n", "text/plain")
        if self.path == "/img/redirect.jpg":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return None
        if self.path == "/img/slow.jpg":
            time.sleep(4)  # past the scraper's 2 s request timeout
            return self.answer(IMAGES["/img/fool.jpg"], "image/jpeg")
        if self.path in PAGES:
            return self.answer(PAGES[self.path].encode(), "text/html; charset=utf-8")
        if self.path in IMAGES:
            return self.answer(IMAGES[self.path], "image/jpeg")  # type vague
        self.send_error(404)
        return None


@pytest.fixture
def site(settings: Any) -> Iterator[str]:
    require_chromium()
    TarotSite.requests = []
    # 2 s: the scraper gives up on the slow URL, as it should.
    with serve_site(TarotSite, settings, timeout=2.0) as url:
        yield url + "/"


def scrape(url: str) -> ScrapeJob:
    return scrape_now(url, album_name="Tarot", max_depth=2)


def outcomes(job: ScrapeJob) -> dict[str, tuple[str, str]]:
    return {
        entry.url.split("/", 3)[-1]: (entry.outcome, entry.reason)
        for entry in job.log.filter(kind=CrawlLogEntry.Kind.IMAGE)
    }


def test_a_site_becomes_an_album_of_unique_valid_captioned_images(site: str) -> None:
    job = scrape(site)

    assert (job.status, job.stage) == (BaseRun.Status.SUCCEEDED, "done")
    by_name = {im.original_filename: im for im in job.album.images.all()}
    assert sorted(by_name) == [
        "empress.png",
        "fool.jpg",
        "magician-large.jpg",
        "priestess.jpg",
        "tower.jpg",
    ]
    assert by_name["fool.jpg"].width == 480  # the larger of the two near duplicates

    def labels(name: str) -> set[tuple[str, str]]:
        return set(
            Label.objects.filter(image=by_name[name], source="html").values_list(
                "kind", "text"
            )
        )

    assert {
        ("alt_text", "The Fool"),
        ("figcaption", "0 - The Fool"),
        ("page_title", "Tarot Collection"),
    } <= labels("fool.jpg")
    assert ("caption", "III - The Empress") in labels("empress.png")
    assert ("alt_text", "The High Priestess") in labels("priestess.jpg")
    assert {("alt_text", "The Tower"), ("figcaption", "XVI - The Tower")} <= labels(
        "tower.jpg"
    )
    fool = by_name["fool.jpg"]
    assert fool.source_url == site + "img/fool.jpg"
    assert fool.page_url == site
    assert fool.source_kind == "scrape"

    log = outcomes(job)
    assert log["img/icon-home.png"][0] == "skipped"
    assert log["img/fake.jpg"][0] == "invalid"
    assert log["img/broken.jpg"][0] == "invalid"
    assert log["img/redirect.jpg"][0] == "blocked"
    assert log["img/slow.jpg"][0] == "failed"
    assert log["img/fool-small.jpg"][0] in ("near_duplicate", "saved")
    assert job.images_saved == 5

    never = {"/private/secret.html", "/img/magician-small.jpg"}
    assert never.isdisjoint(TarotSite.requests)
    page_log = {e.url: (e.outcome, e.reason) for e in job.log.filter(kind="page")}
    assert page_log[site + "private/secret.html"][0] == "skipped"
    assert "robots" in page_log[site + "private/secret.html"][1]
    assert page_log["https://offsite.example.com/page"] == ("skipped", "off-site link")


def test_running_the_job_again_duplicates_nothing(site: str) -> None:
    job = scrape(site)
    counts = (Image.objects.count(), Label.objects.count())
    ScrapeJob.objects.filter(pk=job.pk).update(status=BaseRun.Status.QUEUED)
    run_scrape_job(job.pk)
    job.refresh_from_db()
    assert job.status == BaseRun.Status.SUCCEEDED
    assert (Image.objects.count(), Label.objects.count()) == counts
    assert job.album.images.count() == 5
    assert (job.images_saved, job.images_duplicate) == (0, 6)  # 5 exact, 1 near


def test_a_cancel_lands_at_the_next_checkpoint(site: str) -> None:
    from imagineer_project.runs import run_execute
    from scraping.runs import scrape_job_execute

    job = scrape_job_create(
        url=site, album_name="Tarot", enqueue=False, politeness_delay=0
    )

    def cancel_soon(current: ScrapeJob) -> None:
        if current.pages_fetched >= 1:
            ScrapeJob.objects.filter(pk=current.pk).update(cancel_requested=True)

    run_execute(ScrapeJob, job.pk, lambda j: scrape_job_execute(j, cancel_soon))
    job.refresh_from_db()
    assert job.status == BaseRun.Status.CANCELLED
    assert job.pages_fetched == 2  # asked after page 1, seen at the next checkpoint
    assert job.album.images.count() == 0
    assert "/img/fool.jpg" not in TarotSite.requests


def test_scrape_command_runs_in_the_foreground_and_names_the_album(
    site, capsys
) -> None:
    from django.core.management import call_command

    call_command("scrape", site, album="Tarot CLI", render="never", delay=0)
    job = ScrapeJob.objects.get()
    names = set(job.album.images.values_list("original_filename", flat=True))
    # Without rendering, the JavaScript-built gallery (the Tower) stays unseen.
    assert names == {"empress.png", "fool.jpg", "magician-large.jpg", "priestess.jpg"}
    out = capsys.readouterr().out
    assert "4 saved" in out and "/albums/tarot-cli/" in out


def test_scrape_command_refuses_unsafe_targets(settings) -> None:
    from django.core.management import CommandError, call_command

    settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES = False
    with pytest.raises(CommandError, match="Refusing"):
        call_command("scrape", "http://169.254.169.254/latest/", album="x")
    assert not ScrapeJob.objects.exists()


def test_captions_of_a_replaced_smaller_copy_move_to_the_larger_one(site: str) -> None:
    # From the gallery the small copy is found (and, one request at a time,
    # downloaded) before the full-size one on the home page replaces it.
    job = scrape_now(
        site + "gallery/major.html", album_name="Tarot", per_host_concurrency=1
    )
    fool = Image.objects.get(original_filename="fool.jpg")
    texts = set(fool.labels.values_list("kind", "text"))
    assert {("alt_text", "The Fool"), ("alt_text", "The Fool (small)")} <= texts
    assert not Image.objects.filter(original_filename="fool-small.jpg").exists()

    labels = Label.objects.count()
    ScrapeJob.objects.filter(pk=job.pk).update(status=BaseRun.Status.QUEUED)
    run_scrape_job(job.pk)
    assert Label.objects.count() == labels  # same captions whatever the order
