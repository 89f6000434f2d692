"""Maintenance passes this app registers (imagineer_project.maintenance.registry).

`purge-crawl-logs`: a crawl log explains a job while someone still looks at it;
after CRAWL_LOG_RETENTION_DAYS it is only rows (a big crawl logs 100k). The
job row keeps its counters, so its page still says what it did; the log
section says the log was purged. A retry deletes the log anyway (it crawls
again from the start), so nothing needs an old job's log.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from imagineer_project.maintenance.registry import PassReport, register_pass
from imagineer_project.runs import BaseRun
from scraping.models import CrawlLogEntry, ScrapeJob

logger = logging.getLogger(__name__)

# Rows deleted per statement: short transactions and statements small enough
# for SQLite's variable limit, however big one job's log is.
DELETE_BATCH = 5000


def crawl_log_cutoff() -> datetime:
    return timezone.now() - timedelta(days=settings.CRAWL_LOG_RETENTION_DAYS)


def _expired_jobs(cutoff: datetime) -> QuerySet[ScrapeJob]:
    """Ended jobs that finished before `cutoff`; never a queued or running one."""
    return ScrapeJob.objects.filter(status__in=BaseRun.TERMINAL, finished_at__lt=cutoff)


def crawl_log_purged(*, job: ScrapeJob) -> bool:
    """Whether an empty log on this job's page is the retention's doing."""
    return (
        job.status in BaseRun.TERMINAL
        and job.finished_at is not None
        and job.finished_at < crawl_log_cutoff()
    )


def crawl_logs_purge(report: PassReport) -> None:
    """Delete the crawl log rows of jobs that ended more than
    CRAWL_LOG_RETENTION_DAYS ago, one job at a time, in batches."""
    cutoff = crawl_log_cutoff()
    has_log = CrawlLogEntry.objects.filter(job=OuterRef("pk"))
    job_ids = list(
        _expired_jobs(cutoff)
        .filter(Exists(has_log))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    report.facts["jobs_with_expired_logs"] = len(job_ids)
    for done, job_id in enumerate(job_ids):
        report.progress(done, len(job_ids), f"Crawl log of scrape job #{job_id}")
        if report.dry_run:
            count = CrawlLogEntry.objects.filter(job_id=job_id).count()
        else:
            count = _delete_log(job_id, cutoff)
        if count:
            report.remove("crawl log rows", f"scrape job #{job_id}", count=count)
    report.progress(len(job_ids), len(job_ids), "Done")


def _delete_log(job_id: int, cutoff: datetime) -> int:
    # Each batch checks the job again: a retry queued since the scan makes it
    # active, and its log is then its own business (the retry clears it).
    expired = _expired_jobs(cutoff).filter(pk=job_id).values("pk")
    deleted = 0
    while True:
        ids = list(
            CrawlLogEntry.objects.filter(job_id__in=expired)
            .order_by("id")
            .values_list("id", flat=True)[:DELETE_BATCH]
        )
        if not ids:
            return deleted
        deleted += CrawlLogEntry.objects.filter(pk__in=ids).delete()[0]


register_pass(
    "purge-crawl-logs",
    crawl_logs_purge,
    minutes=24 * 60,
    description="Crawl log rows of scrape jobs that ended more than "
    "CRAWL_LOG_RETENTION_DAYS ago (the job rows and their counts stay).",
)
