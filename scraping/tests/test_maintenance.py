"""purge-crawl-logs, and what a job's page says once its log is gone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from imagineer_project.maintenance.registry import PASSES, PassReport
from scraping import maintenance
from scraping.maintenance import crawl_logs_purge
from scraping.models import CrawlLogEntry, ScrapeJob
from scraping.tests.builders import log, make_job

pytestmark = pytest.mark.django_db

JOBS = "/admin/scraping/scrapejob/"


def ended_days_ago(days: int, status: str = "succeeded", entries: int = 3) -> ScrapeJob:
    job = make_job(status=status, finished_at=timezone.now() - timedelta(days=days))
    for n in range(entries):
        log(job, n)
    return job


def logged_jobs() -> set[int]:
    return set(CrawlLogEntry.objects.values_list("job_id", flat=True))


@pytest.fixture
def jobs(settings: Any) -> dict[str, ScrapeJob]:
    settings.CRAWL_LOG_RETENTION_DAYS = 90
    running = make_job(status="running")
    log(running, 1)
    queued = make_job(status="queued")  # a retried job: finished_at was cleared
    log(queued, 1)
    return {
        "old_ok": ended_days_ago(120, "succeeded", entries=3),
        "old_failed": ended_days_ago(91, "failed", entries=2),
        "old_cancelled": ended_days_ago(200, "cancelled", entries=1),
        "recent": ended_days_ago(30, "succeeded", entries=4),
        "running": running,
        "queued": queued,
    }


def test_the_pass_is_registered_daily() -> None:
    assert PASSES["purge-crawl-logs"].func is crawl_logs_purge
    assert PASSES["purge-crawl-logs"].minutes == 24 * 60


def test_dry_run_lists_the_expired_logs_and_deletes_nothing(jobs: Any) -> None:
    report = PassReport(dry_run=True)

    crawl_logs_purge(report)

    assert report.removed == [
        {
            "what": "crawl log rows",
            "name": f"scrape job #{jobs[k].pk}",
            "size": 0,
            "count": n,
        }
        for k, n in (("old_ok", 3), ("old_failed", 2), ("old_cancelled", 1))
    ]
    assert report.items_removed == 6
    assert CrawlLogEntry.objects.count() == 12


def test_purge_deletes_expired_logs_and_keeps_recent_and_open_ones(
    jobs: Any,
) -> None:
    report = PassReport(dry_run=False)

    crawl_logs_purge(report)

    assert report.items_removed == 6
    assert logged_jobs() == {jobs[k].pk for k in ("recent", "running", "queued")}
    assert ScrapeJob.objects.count() == 6  # the jobs and their counts stay
    again = PassReport(dry_run=False)
    crawl_logs_purge(again)
    assert again.removed == []


def test_a_big_log_is_deleted_in_batches(settings: Any, monkeypatch: Any) -> None:
    settings.CRAWL_LOG_RETENTION_DAYS = 90
    monkeypatch.setattr(maintenance, "DELETE_BATCH", 4)
    job = ended_days_ago(100, entries=11)
    progress: list[tuple[int, int, str]] = []
    report = PassReport(dry_run=False, on_progress=lambda *a: progress.append(a))

    crawl_logs_purge(report)

    assert report.removed == [
        {
            "what": "crawl log rows",
            "name": f"scrape job #{job.pk}",
            "size": 0,
            "count": 11,
        }
    ]
    assert not CrawlLogEntry.objects.exists()
    assert progress[0] == (0, 1, f"Crawl log of scrape job #{job.pk}")


def test_job_page_says_the_log_was_purged(admin_client: Any, settings: Any) -> None:
    settings.CRAWL_LOG_RETENTION_DAYS = 90
    old = ended_days_ago(120, entries=2)
    crawl_logs_purge(PassReport(dry_run=False))
    fresh = make_job(status="queued")

    old_page = admin_client.get(f"{JOBS}{old.pk}/change/")
    fresh_page = admin_client.get(f"{JOBS}{fresh.pk}/change/")

    assert old_page.status_code == 200
    assert "The crawl log was purged" in old_page.text
    assert "kept 90 days after a job ends" in old_page.text
    assert "Nothing crawled yet." in fresh_page.text


def test_clean_up_page_names_the_crawl_log_rows(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    job = make_job(status="failed")
    for n in range(5):
        log(job, n)

    page = admin_client.get(f"{JOBS}{job.pk}/cleanup/")
    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(f"{JOBS}{job.pk}/cleanup/", follow=True)

    assert "5 crawl log rows" in page.text
    assert ScrapeJob.objects.filter(pk=job.pk).exists() is False
    assert not CrawlLogEntry.objects.exists()
    assert "removed 5 crawl log row(s)" in done.text
