"""Request and response shapes of the scrape jobs API (/api/scrape-jobs)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from django.conf import settings
from ninja import ModelSchema, Schema
from pydantic import Field, StringConstraints, field_validator

from albums.models import Image
from albums.schemas import AlbumRefOut
from scraping.models import OPTION_FIELDS, CrawlLogEntry, ScrapeJob

AlbumName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]


def _default(name: str) -> Any:
    return ScrapeJob._meta.get_field(name).get_default()


def http_url_problem(url: str) -> str | None:
    """Why `url` cannot start a crawl, or None. The crawler checks every
    address it actually connects to; this only refuses what is not a web URL."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return "url is not a valid URL."
    if parts.scheme.lower() not in ("http", "https"):
        return "url must start with http:// or https://."
    if not hostname:
        return "url must name a host."
    if any(c.isspace() for c in url):
        return "url must not contain spaces."
    return None


class ScrapeJobIn(Schema):
    url: str = Field(max_length=2048, description="Where the crawl starts.")
    album_name: AlbumName = Field(
        description="The album to fill; one with this name is reused."
    )
    max_depth: int = Field(_default("max_depth"), ge=0, le=10)
    max_pages: int = Field(_default("max_pages"), ge=1, le=10_000)
    max_images: int = Field(_default("max_images"), ge=1, le=100_000)
    render: ScrapeJob.Render = _default("render")
    min_width: int = Field(_default("min_width"), ge=0, le=20_000)
    min_height: int = Field(_default("min_height"), ge=0, le=20_000)
    min_megapixels: float = Field(_default("min_megapixels"), ge=0, le=500)
    max_aspect_ratio: float = Field(_default("max_aspect_ratio"), ge=1, le=100)
    formats: list[Image.Format] = Field(
        default_factory=list,
        max_length=len(Image.Format),
        description="Formats to keep; empty keeps every accepted format.",
    )
    near_duplicate_distance: int = Field(
        _default("near_duplicate_distance"), ge=0, le=32
    )
    respect_robots: bool = _default("respect_robots")
    politeness_delay: float = Field(_default("politeness_delay"), ge=0, le=60)
    per_host_concurrency: int = Field(_default("per_host_concurrency"), ge=1, le=8)
    max_seconds: int = Field(_default("max_seconds"), ge=10, le=24 * 3600)
    max_total_bytes: int = Field(
        _default("max_total_bytes"), ge=1024**2, le=100 * 1024**3
    )

    @field_validator("url")
    @classmethod
    def _web_url(cls, url: str) -> str:
        url = url.strip()
        problem = http_url_problem(url)
        if problem:
            raise ValueError(problem)
        return url

    @field_validator("formats")
    @classmethod
    def _distinct(cls, formats: list[Image.Format]) -> list[Image.Format]:
        return list(dict.fromkeys(formats))

    def options(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in OPTION_FIELDS}
        values["formats"] = [str(f) for f in self.formats]
        return values


class ScrapeProgressOut(Schema):
    done: int
    total: int
    percent: int


class ScrapeCountsOut(Schema):
    pages_fetched: int
    images_found: int
    downloaded: int
    valid: int
    duplicate: int
    saved: int
    failed: int
    bytes_downloaded: int


class ScrapeOptionsOut(Schema):
    max_depth: int
    max_pages: int
    max_images: int
    render: str
    min_width: int
    min_height: int
    min_megapixels: float
    max_aspect_ratio: float
    formats: list[str]
    near_duplicate_distance: int
    respect_robots: bool
    politeness_delay: float
    per_host_concurrency: int
    max_seconds: int
    max_total_bytes: int


class CrawlLogEntryOut(ModelSchema):
    image_id: int | None

    class Meta:
        model = CrawlLogEntry
        fields = [
            "id",
            "kind",
            "url",
            "page_url",
            "outcome",
            "reason",
            "status_code",
            "bytes",
            "elapsed_ms",
            "created",
        ]


class ScrapeJobOut(ModelSchema):
    album: AlbumRefOut | None
    progress: ScrapeProgressOut
    counts: ScrapeCountsOut
    options: ScrapeOptionsOut

    class Meta:
        model = ScrapeJob
        fields = [
            "id",
            "start_url",
            "album_name",
            "status",
            "stage",
            "message",
            "error",
            "cancel_requested",
            "attempts",
            "created",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]

    @staticmethod
    def resolve_progress(job: ScrapeJob) -> dict[str, int]:
        return {
            "done": job.progress_done,
            "total": job.progress_total,
            "percent": job.percent,
        }

    @staticmethod
    def resolve_counts(job: ScrapeJob) -> dict[str, int]:
        return {
            "pages_fetched": job.pages_fetched,
            "images_found": job.images_found,
            "downloaded": job.images_downloaded,
            "valid": job.images_valid,
            "duplicate": job.images_duplicate,
            "saved": job.images_saved,
            "failed": job.images_failed,
            "bytes_downloaded": job.bytes_downloaded,
        }

    @staticmethod
    def resolve_options(job: ScrapeJob) -> dict[str, Any]:
        return {name: getattr(job, name) for name in OPTION_FIELDS}

    @staticmethod
    def resolve_error(job: ScrapeJob) -> str:
        # A worker's exception text can quote a path under MEDIA_ROOT.
        return job.error.replace(str(settings.MEDIA_ROOT), "<media>")


class ScrapeJobDetailOut(ScrapeJobOut):
    recent_log: list[CrawlLogEntryOut] = Field(
        description="The last 50 crawl log entries, newest first."
    )


class CrawlLogFilterIn(Schema):
    kind: CrawlLogEntry.Kind | None = None
    outcome: CrawlLogEntry.Outcome | None = None


class ScrapeJobCleanupOut(Schema):
    images_deleted: int
    images_kept: int
