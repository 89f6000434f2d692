"""A scrape stores its downloads in batches, as an upload run does: a batch's
files are made durable together before its rows, album links, labels and log
entries are committed, and a batch in which a larger copy replaces a smaller
one still tells each image's story once."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import pytest

from albums.dedup import generated_phash_index
from albums.models import Image
from albums.services import near_duplicate_policy
from imagineer_project.lib import storage
from imagineer_project.testing import make_image_bytes, smaller_copy
from imagineer_project.testing.site import SiteHandler, serve_site
from scraping import runs
from scraping.extract import ImageCandidate
from scraping.models import CrawlLogEntry, ScrapeJob
from scraping.safe_fetch import FetchResult
from scraping.services import scrape_job_create
from scraping.tests.builders import scrape_now

pytestmark = pytest.mark.django_db

IMAGES = {
    f"/img/{n}.jpg": make_image_bytes("JPEG", (200, 150), seed=900 + n)
    for n in range(10)
}
LARGE = make_image_bytes("JPEG", (640, 480), seed=950)
IMAGES["/img/large.jpg"] = LARGE
IMAGES["/img/small.jpg"] = smaller_copy(LARGE)
PAGE = "<html><body>{}</body></html>".format(
    "".join(f'<img src="{path}" alt="card {path}">' for path in IMAGES)
)


class Gallery(SiteHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/":
            return self.answer(PAGE.encode(), "text/html")
        if self.path in IMAGES:
            return self.answer(IMAGES[self.path], "image/jpeg")
        self.send_error(404)
        return None


@pytest.fixture
def site(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(runs, "STORE_BATCH", 4)
    with serve_site(Gallery, settings, timeout=5.0) as url:
        yield url + "/"


def scrape(url: str, **options: Any) -> ScrapeJob:
    return scrape_now(
        url, album_name="Gallery", max_depth=0, respect_robots=False, **options
    )


def test_rows_are_committed_only_after_their_files_are_durable(
    site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int, int]] = []
    real_sync = storage.DurableBatch.sync

    def watched(batch: storage.DurableBatch) -> None:
        # At the sync: this batch's files are still under temporary names,
        # and the rows and log entries are those of earlier batches only.
        finals = [p for p in batch.pending if p.exists()]
        logged = CrawlLogEntry.objects.filter(kind=CrawlLogEntry.Kind.IMAGE).count()
        seen.append((Image.objects.count(), logged, len(finals)))
        real_sync(batch)

    monkeypatch.setattr(storage.DurableBatch, "sync", watched)
    job = scrape(site, near_duplicates="keep")

    assert job.status == ScrapeJob.Status.SUCCEEDED, job.error
    assert (job.images_saved, job.images_failed) == (len(IMAGES), 0)
    assert Image.objects.count() == len(IMAGES)
    assert job.album.memberships.count() == len(IMAGES)
    assert len(seen) >= len(IMAGES) / 4  # batches of at most 4
    for images, logged, finals in seen:
        assert finals == 0
        assert images == logged  # what was committed, committed together
    # Each saved image has its log entry and its alt text.
    saved = job.log.filter(outcome=CrawlLogEntry.Outcome.SAVED)
    assert saved.count() == len(IMAGES)
    assert all(entry.image.labels.exists() for entry in saved)


def test_a_larger_copy_found_later_leaves_one_image(site: str) -> None:
    job = scrape(site, near_duplicates="replace_smaller")

    assert job.status == ScrapeJob.Status.SUCCEEDED, job.error
    assert Image.objects.count() == len(IMAGES) - 1
    assert job.images_saved == len(IMAGES) - 1
    large = Image.objects.get(original_filename="large.jpg")
    assert not Image.objects.filter(original_filename="small.jpg").exists()
    small = job.log.get(url__endswith="/img/small.jpg")
    # Whichever came first: the small one replaced, or skipped for the large.
    assert small.image_id in (None, large.pk)
    if small.outcome == CrawlLogEntry.Outcome.SAVED:
        assert small.reason == f"replaced by #{large.pk}, a larger copy"
    else:
        assert small.outcome == CrawlLogEntry.Outcome.NEAR_DUPLICATE
    saved = job.log.filter(outcome=CrawlLogEntry.Outcome.SAVED, image__isnull=False)
    assert saved.count() == len(IMAGES) - 1
    # Both pages' words for the picture end on the copy that stayed, once each.
    texts = list(large.labels.filter(kind="alt_text").values_list("text", flat=True))
    assert sorted(texts) == ["card /img/large.jpg", "card /img/small.jpg"]


def test_a_copy_replaced_later_in_its_own_batch_is_told_once() -> None:
    # The smaller copy is stored first, then the larger one of the same batch
    # replaces it: one image, the small one's entry says so, and its page's
    # words move to the larger copy, as across batches.
    job = scrape_job_create(
        url="http://gallery.test/",
        album_name="One batch",
        enqueue=False,
        near_duplicates="replace_smaller",
    )
    run = runs.ScrapeRun(job, None)
    run.album = job.album
    run.dedup = near_duplicate_policy(job.near_duplicates, max_distance=6)
    run.generated = generated_phash_index()
    run.hosts_announced.add("http://gallery.test")
    finished = []
    for name, data in (("small", smaller_copy(LARGE)), ("large", LARGE)):
        url = f"http://gallery.test/img/{name}.jpg"
        done: concurrent.futures.Future = concurrent.futures.Future()
        done.set_result(FetchResult(url, 200, {}, data, 5, []))
        candidate = ImageCandidate(url=url, source="img", alt=f"the {name} one")
        finished.append((runs.Found(candidate, "http://gallery.test/"), done))

    run._process_batch(finished)

    large = Image.objects.get()
    assert large.original_filename == "large.jpg"
    assert run.job.images_saved == 1
    entries = {e.url.rsplit("/", 1)[-1]: e for e in CrawlLogEntry.objects.all()}
    assert entries["small.jpg"].image is None
    assert entries["small.jpg"].reason == f"replaced by #{large.pk}, a larger copy"
    assert entries["large.jpg"].image == large
    texts = large.labels.filter(kind="alt_text").values_list("text", flat=True)
    assert sorted(texts) == ["the large one", "the small one"]
    assert list(job.album.memberships.values_list("image_id", flat=True)) == [large.pk]
