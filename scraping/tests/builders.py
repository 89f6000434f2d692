"""Test data for the scraping tests."""

from __future__ import annotations

from typing import Any

from scraping.models import CrawlLogEntry, ScrapeJob


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
