"""django-q2 entry points for scraping (thin: fetch by id, run the pipeline)."""

from __future__ import annotations

from imagineer_project.runs import run_execute
from scraping.models import ScrapeJob
from scraping.runs import scrape_job_execute


def run_scrape_job(job_id: int) -> str | None:
    """Crawl, download, validate, deduplicate and store; safe to deliver twice."""
    job = run_execute(ScrapeJob, job_id, scrape_job_execute)
    return job.status if job else None
