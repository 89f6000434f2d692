"""Test data for the scraping tests."""

from __future__ import annotations

from typing import Any

from scraping.models import CrawlLogEntry, ScrapeJob
from scraping.services import scrape_job_create
from scraping.tasks import run_scrape_job


def scrape_now(url: str, **options: Any) -> ScrapeJob:
    """A scrape job for `url`, run here and now (not queued; no politeness
    delay unless `options` give one), read back when it has ended."""
    options = {"album_name": "Site", "politeness_delay": 0} | options
    job = scrape_job_create(url=url, enqueue=False, **options)
    run_scrape_job(job.pk)
    job.refresh_from_db()
    return job


def make_job(**fields: Any) -> ScrapeJob:
    fields.setdefault("start_url", "https://cards.example/")
    fields.setdefault("album_name", "Cards")
    return ScrapeJob.objects.create(**fields)


def log(job: ScrapeJob, n: int, **fields: Any) -> CrawlLogEntry:
    defaults = {
        "kind": CrawlLogEntry.Kind.PAGE,
        "url": f"https://cards.example/page/{n}",
        "outcome": CrawlLogEntry.Outcome.FETCHED,
    }
    return CrawlLogEntry.objects.create(job=job, **(defaults | fields))
