"""The scrape pipeline: crawl pages, discover images, download, validate,
deduplicate and store them in the job's album, logging every URL on the way.

The job runs on a worker thread that owns the database connection, the run
checkpoints and Playwright's sync API. Network I/O runs on an asyncio loop on a
private thread (`AsyncRunner`): the job thread hands it fetches and waits at most
a second at a time, so progress is reported and a cancel lands within seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from albums.dedup import generated_phash_index
from albums.ingest import ImageRejected, InspectedImage, inspect_image
from albums.models import Album, Image, SourceKind
from albums.services import (
    IngestBatch,
    forget_deleted_images,
    image_files_store,
    image_store,
    near_duplicate_policy,
)
from imagineer_project.lib.chromium import chromium_executable
from imagineer_project.lib.storage import durable_batch
from imagineer_project.runs import run_checkpoint
from labeling.models import Label
from labeling.services import labels_import
from scraping.extract import (
    ImageCandidate,
    PageExtract,
    extract_page,
    merge_candidates,
    ui_asset_reason,
)
from scraping.models import COUNTER_FIELDS, CrawlLogEntry, ScrapeJob
from scraping.safe_fetch import (
    BlockedURL,
    FetchError,
    FetchResult,
    FetchSkipped,
    SafeFetcher,
    check_url,
    resolve_checked,
)
from scraping.services import MAX_URL_LENGTH
from scraping.urls import same_site

logger = logging.getLogger(__name__)

Kind = CrawlLogEntry.Kind
Outcome = CrawlLogEntry.Outcome
# Response headers worth keeping as provenance.
KEPT_HEADERS = (
    "content-type",
    "content-length",
    "last-modified",
    "etag",
    "cache-control",
    "x-robots-tag",
)
# Which scraped text becomes which label kind.
LABEL_FIELDS = (
    ("alt", Label.Kind.ALT_TEXT),
    ("title", Label.Kind.TITLE),
    ("figcaption", Label.Kind.FIGCAPTION),
    ("jsonld_caption", Label.Kind.CAPTION),
    ("jsonld_name", Label.Kind.TITLE),
    ("jsonld_description", Label.Kind.PAGE_TEXT),
    ("context", Label.Kind.PAGE_TEXT),
    ("page_title", Label.Kind.PAGE_TITLE),
)
# Downloads stored together: their files made durable with one storage sync,
# then their rows, album links, labels and log entries in one transaction.
STORE_BATCH = 16


class AsyncRunner:
    """An asyncio loop on its own thread, fed coroutines from the job thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.submit(coro).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass(frozen=True)
class Found:
    candidate: ImageCandidate
    page_url: str


class StopCrawl(Exception):
    """A job-wide limit (time, bytes) was reached; what is done is kept."""


# Its name starts the job's error: "StartURLRefused: <url> — <why>".
class StartURLRefused(Exception):  # noqa: N818
    """The start URL itself could not be crawled (a refused address, robots.txt,
    a name that does not resolve, an HTTP error): the job fails with why, rather
    than succeeding with an empty album."""


def scrape_job_execute(
    job: ScrapeJob, on_progress: Callable[[ScrapeJob], None] | None = None
) -> str:
    """The body of a scrape run (called by run_execute); returns its summary."""
    return ScrapeRun(job, on_progress).run()


class ScrapeRun:
    def __init__(
        self, job: ScrapeJob, on_progress: Callable[[ScrapeJob], None] | None
    ) -> None:
        self.job = job
        self.on_progress = on_progress
        self.allow_private = settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES
        self.deadline = time.monotonic() + job.max_seconds
        self.found: dict[str, Found] = {}
        self.seen_images: set[str] = set()
        self.stopped = ""
        self.hosts_announced: set[str] = set()
        self.last_refusal = ""  # why the last page fetch gave nothing
        self.album: Album | None = job.album
        # Log entries and labels of the batch being stored, written with its rows.
        self.pending_log: list[CrawlLogEntry] | None = None
        self.pending_labels: list[tuple[Image, str, str]] = []

    # --- the run --------------------------------------------------------------

    def run(self) -> str:
        self._reset()
        if self.album is None:  # its album was deleted while it waited
            from scraping.services import scrape_job_start

            self.album = scrape_job_start(job=self.job, enqueue=False).album
        self.runner = AsyncRunner()
        try:
            self.fetcher = self.runner.run(self._make_fetcher())
            try:
                self._crawl()
                self._download()
            except StopCrawl as exc:
                self.stopped = str(exc)
            finally:
                self.runner.run(self.fetcher.aclose())
        finally:
            self.runner.close()
        self.job.stage = ScrapeJob.Stage.DONE
        self._report("Done")
        return self._summary()

    def _reset(self) -> None:
        """A job run again (re-delivered, re-queued after a crash, or retried)
        starts over: images dedupe by content and labels are get-or-create, so
        only the log and counters need clearing."""
        self.job.log.all().delete()
        for name in COUNTER_FIELDS:
            setattr(self.job, name, 0)

    async def _make_fetcher(self) -> SafeFetcher:
        job = self.job
        return SafeFetcher(
            allow_private=self.allow_private,
            user_agent=settings.SCRAPER_USER_AGENT,
            max_bytes=settings.IMAGINEER_MAX_UPLOAD_BYTES,
            timeout=settings.SCRAPER_REQUEST_TIMEOUT,
            max_concurrency=settings.SCRAPER_MAX_CONCURRENCY,
            politeness_delay=job.politeness_delay,
            per_host_concurrency=job.per_host_concurrency,
            respect_robots=job.respect_robots,
        )

    def _summary(self) -> str:
        job = self.job
        text = (
            f"{job.images_saved} saved, {job.images_duplicate} duplicate, "
            f"{job.images_failed} failed or invalid, from {job.pages_fetched} "
            f"page(s)"
        )
        return f"{text}; stopped early: {self.stopped}" if self.stopped else text

    # --- progress and log -----------------------------------------------------

    def _report(
        self, message: str, *, done: int | None = None, total: int | None = None
    ) -> None:
        job = self.job
        counts = {name: getattr(job, name) for name in COUNTER_FIELDS}
        ScrapeJob.objects.filter(pk=job.pk).update(stage=job.stage, **counts)
        run_checkpoint(job, done=done, total=total, message=message)
        if self.on_progress:
            self.on_progress(job)

    def _log(
        self,
        kind: str,
        url: str,
        outcome: str,
        reason: str = "",
        *,
        result: FetchResult | None = None,
        page_url: str = "",
        image: Image | None = None,
        status: int | None = None,
    ) -> None:
        entry = CrawlLogEntry(
            job=self.job,
            kind=kind,
            url=url[:MAX_URL_LENGTH],
            page_url=page_url[:MAX_URL_LENGTH],
            outcome=outcome,
            reason=reason[:500],
            status_code=result.status if result else status,
            bytes=len(result.content) if result else 0,
            elapsed_ms=result.elapsed_ms if result else 0,
            image=image,
        )
        if self.pending_log is not None:
            self.pending_log.append(entry)
        else:
            entry.save()

    def _check_limits(self) -> None:
        if time.monotonic() > self.deadline:
            raise StopCrawl(f"time limit of {self.job.max_seconds}s reached")
        if self.job.bytes_downloaded > self.job.max_total_bytes:
            raise StopCrawl(f"download limit of {self.job.max_total_bytes:,} bytes")

    # --- crawling -------------------------------------------------------------

    def _crawl(self) -> None:
        job = self.job
        job.stage = ScrapeJob.Stage.CRAWLING
        start = job.start_url
        queue: deque[tuple[str, int]] = deque([(start, 0)])
        seen = {start}
        self._report("Crawling", done=0, total=job.max_pages)
        while queue:
            url, depth = queue.popleft()
            if job.pages_fetched >= job.max_pages:
                self._log(Kind.PAGE, url, Outcome.SKIPPED, "page limit reached")
                continue
            self._check_limits()
            page = self._fetch_page(url)
            if page is None:
                if depth == 0:
                    raise StartURLRefused(f"{url} — {self.last_refusal}")
                continue
            self._collect_images(page)
            for link in page.links:
                if link in seen:
                    continue
                seen.add(link)
                if not same_site(link, start):
                    self._log(
                        Kind.PAGE,
                        link,
                        Outcome.SKIPPED,
                        "off-site link",
                        page_url=page.url,
                    )
                elif depth + 1 > job.max_depth:
                    self._log(
                        Kind.PAGE,
                        link,
                        Outcome.SKIPPED,
                        f"deeper than max depth {job.max_depth}",
                        page_url=page.url,
                    )
                else:
                    queue.append((link, depth + 1))
            self._report(
                f"Crawled {job.pages_fetched} page(s); "
                f"{job.images_found} image(s) found",
                done=job.pages_fetched,
                total=job.max_pages,
            )

    def _fetch(self, url: str, kind: str, purpose: str) -> FetchResult | None:
        """Fetch through the guarded client; log and return None on any refusal."""
        try:
            result = self.runner.run(self.fetcher.fetch(url, purpose=purpose))
        except BlockedURL as exc:
            self._log(kind, url, Outcome.BLOCKED, exc.reason)
            self.last_refusal = f"blocked: {exc.reason}"
        except FetchSkipped as exc:
            self._log(kind, url, Outcome.SKIPPED, exc.reason)
            self.last_refusal = f"skipped: {exc.reason}"
        except FetchError as exc:
            self._log(kind, url, Outcome.FAILED, exc.reason, status=exc.status)
            status = f" {exc.status}" if exc.status else ""
            self.last_refusal = f"failed: {exc.reason}{status}"
        else:
            self._announce_host(url)
            return result
        return None

    def _announce_host(self, url: str) -> None:
        """Log, once per host, how politely it is crawled (robots.txt, delays)."""
        parts = urlsplit(url)
        host = f"{parts.scheme}://{parts.netloc}"
        if host in self.hosts_announced:
            return
        self.hosts_announced.add(host)
        crawl_delay = self.fetcher.crawl_delay(url)
        delay = max(self.job.politeness_delay, crawl_delay or 0)
        # Crawl-delay is kept as given; otherwise the delay adapts (throttle.py).
        pace = "" if crawl_delay else ", adapting to the server's pace"
        state = self.fetcher.robots_state(url)
        # What happened to robots.txt, told truly: read, absent, or not asked for.
        if not self.job.respect_robots or state is None:
            outcome, robots, status = Outcome.SKIPPED, "robots.txt ignored", None
        elif state.status is not None and 200 <= state.status < 300:
            outcome, robots = Outcome.FETCHED, "robots.txt read and honoured"
            status = state.status
        elif state.absent:
            # Absent: nothing to honour, and nothing went wrong.
            outcome, robots, status = Outcome.SKIPPED, state.note, state.status
        else:
            outcome, robots, status = Outcome.FAILED, state.note, state.status
        self._log(
            Kind.ROBOTS,
            f"{host}/robots.txt",
            outcome,
            f"{robots}; {delay:g}s between requests{pace}; at most "
            f"{self.job.per_host_concurrency} at a time",
            status=status,
        )

    def _fetch_page(self, url: str) -> PageExtract | None:
        result = self._fetch(url, Kind.PAGE, "page")
        if result is None:
            return None
        content_type = result.headers.get("content-type", "")
        if "html" not in content_type:
            why = f"not an HTML page ({content_type or 'no content type'})"
            self._log(Kind.PAGE, url, Outcome.SKIPPED, why, result=result)
            self.last_refusal = f"skipped: {why}"
            return None
        self.job.pages_fetched += 1
        self.job.bytes_downloaded += len(result.content)
        html = result.content.decode(_charset(content_type), errors="replace")
        page = extract_page(html, result.url)
        self._log(
            Kind.PAGE, url, Outcome.FETCHED, _redirect_note(result), result=result
        )
        if self._should_render(page):
            page = self._render(result.url) or page
        return page

    def _should_render(self, page: PageExtract) -> bool:
        render = self.job.render
        return render == ScrapeJob.Render.ALWAYS or (
            render == ScrapeJob.Render.AUTO and page.needs_js
        )

    def _render(self, url: str) -> PageExtract | None:
        from scraping.render import RenderError, render_page

        if chromium_executable() is None:
            self._log(
                Kind.PAGE,
                url,
                Outcome.FAILED,
                "needs JavaScript but Chromium is not installed",
            )
            return None
        try:
            rendered = render_page(
                url,
                guard=self._guard,
                timeout=settings.SCRAPER_RENDER_TIMEOUT,
                user_agent=settings.SCRAPER_USER_AGENT,
            )
        except RenderError as exc:
            self._log(Kind.PAGE, url, Outcome.FAILED, f"rendering failed: {exc}")
            return None
        for blocked in rendered.blocked:
            self._log(
                Kind.PAGE,
                blocked,
                Outcome.BLOCKED,
                "browser request refused (unsafe address or WebSocket)",
                page_url=url,
            )
        for failed in rendered.failed:
            reason = f"browser {failed.resource_type} request failed: {failed.reason}"
            self._log(Kind.PAGE, failed.url, Outcome.FAILED, reason, page_url=url)
        self._log(Kind.PAGE, url, Outcome.FETCHED, "rendered in Chromium")
        return extract_page(rendered.html, rendered.url)

    def _guard(self, url: str) -> str | None:
        """The browser's per-request SSRF check: None to allow, else why not."""
        try:
            check_url(url, allow_private=self.allow_private)
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") and parts.hostname:
                port = parts.port or (443 if parts.scheme == "https" else 80)
                resolve_checked(parts.hostname, port, allow_private=self.allow_private)
        except BlockedURL as exc:
            return exc.reason
        except OSError as exc:  # unresolvable: the browser would fail anyway
            return f"cannot resolve: {exc}"
        return None

    def _collect_images(self, page: PageExtract) -> None:
        for candidate in page.images:
            url = candidate.url
            if url in self.seen_images:
                # Named again (here or on another page): its captions count too.
                kept = self.found.get(url)
                if kept is not None:
                    merged = merge_candidates(kept.candidate, candidate)
                    self.found[url] = Found(merged, kept.page_url)
                continue
            self.seen_images.add(url)  # each URL is considered and logged once
            if ui_reason := ui_asset_reason(candidate):
                self._log(
                    Kind.IMAGE, url, Outcome.SKIPPED, ui_reason, page_url=page.url
                )
            elif len(url) > MAX_URL_LENGTH:
                self._log(
                    Kind.IMAGE, url, Outcome.SKIPPED, "URL too long", page_url=page.url
                )
            elif len(self.found) >= self.job.max_images:
                self._log(
                    Kind.IMAGE,
                    url,
                    Outcome.SKIPPED,
                    "image limit reached",
                    page_url=page.url,
                )
            else:
                self.found[url] = Found(candidate, page.url)
                self.job.images_found += 1

    # --- downloading and storing ----------------------------------------------

    def _download(self) -> None:
        job = self.job
        job.stage = ScrapeJob.Stage.DOWNLOADING
        items = list(self.found.values())
        self.dedup = near_duplicate_policy(
            job.near_duplicates, max_distance=job.near_duplicate_distance
        )
        self.generated = generated_phash_index()
        total = len(items)
        self._report(f"Downloading {total} image(s)", done=0, total=total)
        # Fetches in flight, each holding its body in memory (up to the byte
        # cap): as many as before batching. A batch takes what has finished;
        # 16 in flight stored no faster on loopback (4.6-4.8 s against 4.8-5.1
        # s for 500 images).
        window = max(8, job.per_host_concurrency * 4)
        waiting = deque(items)
        running: dict[concurrent.futures.Future, Found] = {}
        processed = 0
        try:
            while waiting or running:
                self._check_limits()
                while waiting and len(running) < window:
                    item = waiting.popleft()
                    future = self.runner.submit(
                        self.fetcher.fetch(item.candidate.url, purpose="image")
                    )
                    running[future] = item
                done, _ = concurrent.futures.wait(
                    running, timeout=1.0, return_when=concurrent.futures.FIRST_COMPLETED
                )
                # In the order they were found (the log reads as the pages do).
                finished = [(running.pop(f), f) for f in list(running) if f in done]
                for start in range(0, len(finished), STORE_BATCH):
                    self._process_batch(finished[start : start + STORE_BATCH])
                processed += len(finished)
                self._report(
                    f"{processed}/{total} image(s): {job.images_saved} saved, "
                    f"{job.images_duplicate} duplicate, {job.images_failed} failed",
                    done=processed,
                    total=total,
                )
        finally:
            for future in running:
                future.cancel()

    def _process_batch(
        self, finished: list[tuple[Found, concurrent.futures.Future]]
    ) -> None:
        """Store a batch of finished downloads as an upload run stores its
        files: each one checked, the valid ones' files written and made
        durable together (durable_batch: one storage sync, not four fsyncs
        per image), and only then their rows, album links, labels and the
        batch's log entries committed in one transaction. So no row names a
        file a power cut could lose, and a crash loses the batch or nothing
        (a job run again starts over, finding what it stored as duplicates)."""
        self.pending_log, self.pending_labels = [], []
        try:
            valid = []
            with durable_batch():
                for item, future in finished:
                    checked = self._checked(item, future)
                    if checked is not None:
                        image_files_store(checked[1])
                        valid.append((item, *checked))
            with transaction.atomic():
                batch = IngestBatch(self.album)
                batch.read_known(inspected.sha256 for _, _, inspected in valid)
                for item, result, inspected in valid:
                    self._store(item, result, inspected, batch)
                batch.flush()
                labels_import(self.pending_labels, source=Label.Source.HTML)
                forget_deleted_images(self.pending_log)
                CrawlLogEntry.objects.bulk_create(self.pending_log)
        finally:
            self.pending_log, self.pending_labels = None, []

    def _checked(
        self, item: Found, future: concurrent.futures.Future
    ) -> tuple[FetchResult, InspectedImage] | None:
        """A finished download, inspected and within the job's options; or
        None, its failure logged."""
        try:
            result = future.result()
        except BlockedURL as exc:
            return self._failed(item, Outcome.BLOCKED, exc.reason)
        except FetchSkipped as exc:
            return self._failed(item, Outcome.SKIPPED, exc.reason)
        except FetchError as exc:
            return self._failed(item, Outcome.FAILED, exc.reason, status=exc.status)
        self._announce_host(item.candidate.url)
        self.job.images_downloaded += 1
        self.job.bytes_downloaded += len(result.content)
        try:
            # Content decides the format; a URL naming another is a warning.
            inspected = inspect_image(result.content, _filename(result.url))
            self._check_options(inspected)
        except ImageRejected as exc:
            return self._failed(item, Outcome.INVALID, exc.reason, result=result)
        self.job.images_valid += 1
        return result, inspected

    def _failed(
        self,
        item: Found,
        outcome: str,
        reason: str,
        *,
        result: FetchResult | None = None,
        status: int | None = None,
    ) -> None:
        """Count and log a download that stores nothing."""
        self.job.images_failed += 1
        self._log(
            Kind.IMAGE,
            item.candidate.url,
            outcome,
            reason,
            result=result,
            page_url=item.page_url,
            status=status,
        )

    def _check_options(self, inspected: InspectedImage) -> None:
        job, w, h = self.job, inspected.width, inspected.height
        if job.formats and inspected.format not in job.formats:
            raise ImageRejected(
                "format", f"{inspected.format} is not among {', '.join(job.formats)}"
            )
        if w < job.min_width or h < job.min_height:
            raise ImageRejected(
                "too_small",
                f"{w}×{h} is under the minimum {job.min_width}×{job.min_height}",
            )
        if w * h < job.min_megapixels * 1_000_000:
            raise ImageRejected(
                "too_small", f"{w * h / 1e6:.2f} MP is under {job.min_megapixels} MP"
            )
        if max(w, h) / min(w, h) > job.max_aspect_ratio:
            raise ImageRejected(
                "aspect",
                f"aspect ratio {max(w, h) / min(w, h):.1f} "
                f"exceeds {job.max_aspect_ratio}",
            )

    def _store(
        self,
        item: Found,
        result: FetchResult,
        inspected: InspectedImage,
        batch: IngestBatch,
    ) -> None:
        """Exact duplicate: link it. Near duplicate: the job's near_duplicates
        mode decides, through the one policy every door shares
        (albums.services.image_store). Its files are already durable."""
        job = self.job
        warning = self._generated_warning(item, inspected.phash)
        stored = image_store(
            inspected=inspected,
            filename=_filename(result.url),
            source_kind=SourceKind.SCRAPE,
            album=self.album,
            provenance=_provenance(result, item.page_url),
            near_duplicates=self.dedup,
            on_delete=self._replaced,
            files_stored=True,
            batch=batch,
        )
        image = stored.image
        notes = [
            w["message"]
            if w["code"] == "near_duplicate"
            else f"{w['code']}: {w['message']}"
            for w in stored.warnings
        ]
        if stored.status == "duplicate":
            near = stored.near_duplicate() is not None
            outcome = Outcome.NEAR_DUPLICATE if near else Outcome.DUPLICATE
            if not near:
                notes.insert(0, f"same bytes as image #{image.pk}")
            return self._kept_existing(item, result, image, outcome, notes, warning)
        job.images_saved += 1
        self._label(image, item.candidate)
        self._log(
            Kind.IMAGE,
            item.candidate.url,
            Outcome.SAVED,
            "; ".join(r for r in (*notes, warning) if r),
            result=result,
            page_url=item.page_url,
            image=image,
        )

    def _kept_existing(
        self,
        item: Found,
        result: FetchResult,
        image: Image,
        outcome: str,
        notes: list[str],
        warning: str,
    ) -> None:
        self.job.images_duplicate += 1
        self._label(image, item.candidate)
        self._log(
            Kind.IMAGE,
            item.candidate.url,
            outcome,
            "; ".join(r for r in (*notes, warning) if r),
            result=result,
            page_url=item.page_url,
            image=image,
        )

    def _generated_warning(self, item: Found, phash: int) -> str:
        """A warning when the image looks like one this system generated: an
        album trained on it would train on the model's own output."""
        hits = self.generated.nearest(phash, self.job.near_duplicate_distance)
        if not hits:
            return ""
        image_id, distance = hits[0]
        logger.warning(
            "Scrape %s: %s looks like generated image %s (distance %s)",
            self.job.pk,
            item.candidate.url,
            image_id,
            distance,
        )
        return (
            f"WARNING: looks like generated image #{image_id} ({distance} bits "
            "apart); training on it trains on this system's own output"
        )

    def _replaced(self, smaller: Image, larger: Image) -> None:
        """Just before a smaller near duplicate that a larger download replaced
        is deleted (its captions have moved to the larger copy: labeling's
        replacer, see albums.extensions): if this job saved it, it no longer
        counts as saved and its log entry says what became of it."""
        reason = f"replaced by #{larger.pk}, a larger copy"
        saved_here = self.job.log.filter(image=smaller, outcome=Outcome.SAVED)
        replaced = saved_here.update(reason=reason)
        for entry in self.pending_log or []:  # saved earlier in this batch
            if entry.image_id == smaller.pk and entry.outcome == Outcome.SAVED:
                entry.reason = reason
                replaced += 1
        if replaced:
            self.job.images_saved -= 1
        # Its captions not yet written go where its written ones went.
        self.pending_labels = [
            (larger if image.pk == smaller.pk else image, kind, text)
            for image, kind, text in self.pending_labels
        ]

    def _label(self, image: Image, candidate: ImageCandidate) -> None:
        """The page's texts for this image, as labels written with the batch
        (once each: what the image already has is left out)."""
        for field, kind in LABEL_FIELDS:
            # Every distinct caption the page(s) gave this image, not only the first.
            for text in candidate.texts(field):
                if text.strip():
                    self.pending_labels.append((image, kind, text.strip()))


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip("\"'")
    return "utf-8"


def _redirect_note(result: FetchResult) -> str:
    return f"redirected to {result.url}" if result.redirects else ""


def _filename(url: str) -> str:
    return PurePosixPath(urlsplit(url).path).name


def _provenance(result: FetchResult, page_url: str) -> dict[str, Any]:
    return {
        "source_url": result.url[:MAX_URL_LENGTH],
        "page_url": page_url[:MAX_URL_LENGTH],
        "fetched_at": timezone.now(),
        "source_headers": {
            k: v for k, v in result.headers.items() if k in KEPT_HEADERS
        },
    }
