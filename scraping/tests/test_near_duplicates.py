"""The scraper's door into the shared duplicate and format policy: content names
the file, a near duplicate follows the job's near_duplicates mode, and the crawl
log says what became of an image a larger copy replaced. A real site on
loopback, real images made with Pillow."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command

from albums.models import Image
from imagineer_project.testing import make_image_bytes, smaller_copy
from imagineer_project.testing.site import SiteHandler, serve_site
from scraping.models import CrawlLogEntry, ScrapeJob
from scraping.tests.builders import scrape_now

pytestmark = pytest.mark.django_db

BIG = make_image_bytes("JPEG", (480, 360), seed=101)


FILES = {
    "/img/photo.jpg": make_image_bytes("WEBP", (400, 300), seed=7),  # WebP bytes
    "/img/small.jpg": smaller_copy(BIG),
    "/img/big.jpg": BIG,
}
PAGES = {
    "/webp.html": '<html><body><img src="/img/photo.jpg"></body></html>',
    # The small copy first: the big one answers later (Site.do_GET), so the
    # small one is saved before the big one arrives and replaces it.
    "/pair.html": '<html><body><img src="/img/small.jpg"> '
    '<p>text</p> <img src="/img/big.jpg"></body></html>',
}


class Site(SiteHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path in PAGES:
            body, kind = PAGES[self.path].encode(), "text/html; charset=utf-8"
        elif self.path in FILES:
            if self.path == "/img/big.jpg":
                time.sleep(0.8)  # the small copy is stored first
            body, kind = FILES[self.path], "image/jpeg"  # the type lies too
        else:
            self.send_error(404)
            return
        self.answer(body, kind)


@pytest.fixture
def site(settings: Any) -> Iterator[str]:
    with serve_site(Site, settings) as url:
        yield url


def scrape(url: str, **options: Any) -> ScrapeJob:
    defaults = {"per_host_concurrency": 1, "render": "never"}
    job = scrape_now(url, **defaults | options)
    assert job.status == "succeeded", (job.error, job.message)
    return job


def image_log(job: ScrapeJob) -> dict[str, CrawlLogEntry]:
    return {
        entry.url.rsplit("/", 1)[-1]: entry
        for entry in job.log.filter(kind=CrawlLogEntry.Kind.IMAGE)
    }


def test_webp_bytes_at_a_jpg_url_are_named_by_their_content(site: str) -> None:
    job = scrape(site + "/webp.html")

    image = Image.objects.get()
    assert image.format == "WEBP"
    assert image.file.name.endswith(".webp")
    assert image.original_filename == "photo.webp"
    entry = image_log(job)["photo.jpg"]
    assert entry.outcome == "saved"
    assert "extension_mismatch" in entry.reason and ".jpg" in entry.reason


def test_an_image_a_larger_copy_replaced_reads_replaced_by(site: str) -> None:
    job = scrape(site + "/pair.html")

    big = Image.objects.get()
    assert (big.width, big.height) == (480, 360)
    log = image_log(job)
    assert log["small.jpg"].outcome == "saved"
    assert log["small.jpg"].reason.startswith(f"replaced by #{big.pk}")
    assert log["big.jpg"].image_id == big.pk
    assert "near duplicate of image #" in log["big.jpg"].reason.lower()
    assert "replaces it" in log["big.jpg"].reason
    assert job.images_saved == 1
    assert list(job.album.images.all()) == [big]


@pytest.mark.parametrize(
    ("mode", "stored", "outcomes"),
    [
        ("keep", 2, ("saved", "saved")),
        ("skip", 1, ("saved", "near_duplicate")),
        ("replace_smaller", 1, ("saved", "saved")),
    ],
)
def test_the_job_option_decides(site: str, mode: str, stored: int, outcomes) -> None:
    job = scrape(site + "/pair.html", near_duplicates=mode)
    log = image_log(job)
    assert (log["small.jpg"].outcome, log["big.jpg"].outcome) == outcomes
    assert Image.objects.count() == job.album.images.count() == stored
    assert "near duplicate of image #" in log["big.jpg"].reason.lower()


def test_the_scrape_command_takes_near_duplicates(site: str, capsys) -> None:
    call_command(
        "scrape",
        site + "/pair.html",
        album="Site",
        render="never",
        delay=0,
        near_duplicates="keep",
    )
    job = ScrapeJob.objects.get()
    assert job.near_duplicates == "keep"
    assert Image.objects.count() == 2
    assert "2 saved" in capsys.readouterr().out
