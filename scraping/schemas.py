"""Request and response shapes of the scrape jobs API (/api/scrape-jobs)."""

from __future__ import annotations

from typing import Annotated, Any

from django.conf import settings
from ninja import ModelSchema, Schema
from pydantic import Field, StringConstraints, field_validator, model_validator

from albums.models import Image, NearDuplicates
from albums.schemas import AlbumRefOut
from scraping.models import OPTION_FIELDS, CrawlLogEntry, ScrapeJob
from scraping.selectors import crawl_log_recent
from scraping.services import (
    MAX_URL_LENGTH,
    OPTION_LIMITS,
    http_url_problem,
    option_default,
)

AlbumName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]


def _option(name: str) -> Any:
    """The option's field: its default and range, as scraping.services checks
    them (so the OpenAPI schema tells the truth)."""
    low, high = OPTION_LIMITS[name]
    return Field(option_default(name), ge=low, le=high)


class ScrapeJobIn(Schema):
    url: str = Field(max_length=MAX_URL_LENGTH, description="Where the crawl starts.")
    album_name: AlbumName | None = Field(
        None,
        description="The album to fill by name: a scrape album with this name is "
        "reused, else made. Required unless album_id is given.",
    )
    album_id: int | None = Field(
        None,
        ge=1,
        description="Fill this existing album, whatever its kind (an album's "
        "'Scrape into'); cleaning the job up then takes out only the images it "
        "put in. 404 when there is no such album.",
    )
    max_depth: int = _option("max_depth")
    max_pages: int = _option("max_pages")
    max_images: int = _option("max_images")
    render: ScrapeJob.Render = option_default("render")
    min_width: int = _option("min_width")
    min_height: int = _option("min_height")
    min_megapixels: float = _option("min_megapixels")
    max_aspect_ratio: float = _option("max_aspect_ratio")
    formats: list[Image.Format] = Field(
        default_factory=list,
        max_length=len(Image.Format),
        description="Formats to keep; empty keeps every accepted format.",
    )
    near_duplicate_distance: int = _option("near_duplicate_distance")
    near_duplicates: NearDuplicates = Field(
        option_default("near_duplicates"),
        description="A near duplicate of a library image (within "
        "near_duplicate_distance): keep both, skip the new one, or keep the "
        "larger (replace_smaller). See 'Duplicates and formats' in docs/api.md.",
    )
    respect_robots: bool = option_default("respect_robots")
    politeness_delay: float = _option("politeness_delay")
    per_host_concurrency: int = _option("per_host_concurrency")
    max_seconds: int = _option("max_seconds")
    max_total_bytes: int = _option("max_total_bytes")

    @field_validator("url")
    @classmethod
    def _web_url(cls, url: str) -> str:
        # The request's shape, reported like every other field's; what the
        # crawler would refuse (a private address) is scrape_job_create's.
        url = url.strip()
        if problem := http_url_problem(url):
            raise ValueError(problem)
        return url

    @model_validator(mode="after")
    def _names_an_album(self) -> ScrapeJobIn:
        if self.album_name is None and self.album_id is None:
            raise ValueError("give album_name (or album_id)")
        return self

    def options(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in OPTION_FIELDS}
        values["formats"] = [str(f) for f in self.formats]
        values["near_duplicates"] = str(self.near_duplicates)
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
    near_duplicates: str
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

    @staticmethod
    def resolve_recent_log(job: ScrapeJob) -> list[CrawlLogEntry]:
        return crawl_log_recent(job=job)


class CrawlLogFilterIn(Schema):
    kind: CrawlLogEntry.Kind | None = None
    outcome: CrawlLogEntry.Outcome | None = None


class ScrapeJobCleanupOut(Schema):
    images_deleted: int
    images_kept: int
