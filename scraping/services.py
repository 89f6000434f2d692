"""Writes for scrape jobs: create (one validating door for the API, the admin
and the CLI), start, and the album a job fills."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from albums.models import Album, Image, NearDuplicates
from albums.services import album_get_or_create
from imagineer_project.errors import Invalid
from imagineer_project.permissions import person
from imagineer_project.ratelimit import rate_limit_take
from imagineer_project.runs import run_enqueue
from scraping.models import OPTION_FIELDS, ScrapeJob
from scraping.safe_fetch import BlockedURL, check_url

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MAX_URL_LENGTH = 2048
MAX_ALBUM_NAME = 200
# The inclusive range of each numeric option, whoever sets it.
OPTION_LIMITS: dict[str, tuple[float, float]] = {
    "max_depth": (0, 10),
    "max_pages": (1, 10_000),
    "max_images": (1, 100_000),
    "min_width": (0, 20_000),
    "min_height": (0, 20_000),
    "min_megapixels": (0, 500),
    "max_aspect_ratio": (1, 100),
    "near_duplicate_distance": (0, 32),
    "politeness_delay": (0, 60),
    "per_host_concurrency": (1, 8),
    "max_seconds": (10, 24 * 3600),
    "max_total_bytes": (1024**2, 100 * 1024**3),
}


def option_default(name: str) -> Any:
    return ScrapeJob._meta.get_field(name).get_default()


def http_url_problem(url: str) -> str | None:
    """Why `url` is not a web URL at all, or None."""
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
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "url has an invalid port (1 to 65535)."
    if ":" not in hostname and "" in hostname.rstrip(".").split("."):
        return "url has an invalid host name (an empty label)."
    return None


def _url_problem(url: str) -> str | None:
    if len(url) > MAX_URL_LENGTH:
        return f"url is longer than {MAX_URL_LENGTH} characters."
    problem = http_url_problem(url)
    if problem:
        return problem
    # The crawler checks every address it connects to; this refuses at once a
    # start URL it could never fetch (a private or loopback address, unless
    # SCRAPER_ALLOW_PRIVATE_ADDRESSES).
    try:
        check_url(url, allow_private=settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES)
    except BlockedURL as exc:
        return f"refused: {exc.reason}."
    return None


def _option_problem(name: str, value: Any) -> str | None:
    if name == "render":
        choices = ScrapeJob.Render.values
        return None if value in choices else f"one of {', '.join(choices)}"
    if name == "near_duplicates":
        choices = NearDuplicates.values
        return None if value in choices else f"one of {', '.join(choices)}"
    if name == "respect_robots":
        return None if isinstance(value, bool) else "true or false"
    if name == "formats":
        known = Image.Format.values
        bad = [f for f in value if f not in known]
        return f"unknown format(s) {', '.join(map(str, bad))}" if bad else None
    low, high = OPTION_LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "a number"
    return None if low <= value <= high else f"from {low:g} to {high:g}"


def scrape_job_validate(*, url: str, album_name: str, **options: Any) -> dict[str, Any]:
    """The job's fields, cleaned; Invalid naming every bad field at once."""
    errors: dict[str, str] = {}
    url = (url or "").strip()
    if problem := _url_problem(url):
        errors["url"] = problem
    album_name = (album_name or "").strip()
    if not album_name or len(album_name) > MAX_ALBUM_NAME:
        errors["album_name"] = f"1 to {MAX_ALBUM_NAME} characters"
    fields: dict[str, Any] = {"start_url": url, "album_name": album_name}
    for name, value in options.items():
        if name not in OPTION_FIELDS:
            errors[name] = "not an option of a scrape job"
        elif problem := _option_problem(name, value):
            errors[name] = problem
        else:
            fields[name] = value
    if "formats" in fields:
        fields["formats"] = [str(f) for f in dict.fromkeys(fields["formats"])]
    if errors:
        raise Invalid(errors=errors, code="scrape_job_invalid")
    return fields


def scrape_job_create(
    *,
    url: str,
    album_name: str = "",
    album: Album | None = None,
    created_by: User | None = None,
    enqueue: bool = True,
    rate_limited: bool = False,
    **options: Any,
) -> ScrapeJob:
    """Check a crawl of `url` into the album named `album_name` and queue it.
    Raises Invalid (every bad field, with why) before anything is created;
    with `rate_limited` (the API and the admin), RateLimitExceeded past the
    `scrape` rate limit.

    With `album` (an album's "Scrape into"), the crawl fills that very album,
    whatever its kind; cleaning the job up then takes out only what the job
    put in (scraping.cleanup)."""
    if album is not None:
        album_name = album.name
    fields = scrape_job_validate(url=url, album_name=album_name, **options)
    if rate_limited:
        rate_limit_take("scrape", user=created_by)
    # One transaction: a job whose start failed is never left queued for nobody.
    with transaction.atomic():
        job = ScrapeJob.objects.create(
            created_by=person(created_by), album=album, **fields
        )
        return scrape_job_start(job=job, enqueue=enqueue)


def scrape_job_start(*, job: ScrapeJob, enqueue: bool = True) -> ScrapeJob:
    """Give a new job its album (found or created by name) and queue it."""
    with transaction.atomic():
        if job.album_id is None:
            job.album = scrape_album(job)
            job.save(update_fields=["album"])
        if enqueue:
            run_enqueue(job)
    return job


def scrape_album(job: ScrapeJob) -> Album:
    """Reuse a scrape album of that name, never a manual or upload one: cleaning
    up a job deletes its album, which must not take a person's uploads with it."""
    return album_get_or_create(
        name=job.album_name,
        source_kind=Album.Kind.SCRAPE,
        created_by=job.created_by,
        same_kind_only=True,
    )
