from __future__ import annotations

from django.conf import settings
from django.db import models

from albums.models import NearDuplicates
from imagineer_project.runs import BaseRun

# The options a caller sets on a job (API, admin, CLI, retry copy them by name).
OPTION_FIELDS = (
    "max_depth",
    "max_pages",
    "max_images",
    "render",
    "min_width",
    "min_height",
    "min_megapixels",
    "max_aspect_ratio",
    "formats",
    "near_duplicate_distance",
    "near_duplicates",
    "respect_robots",
    "politeness_delay",
    "per_host_concurrency",
    "max_seconds",
    "max_total_bytes",
)
# What the pipeline counts as it goes.
COUNTER_FIELDS = (
    "pages_fetched",
    "images_found",
    "images_downloaded",
    "images_valid",
    "images_duplicate",
    "images_saved",
    "images_failed",
    "bytes_downloaded",
)


class ScrapeJob(BaseRun):
    """Crawl a site from `start_url` and fill an album with its images."""

    class Render(models.TextChoices):
        AUTO = "auto", "When the page builds its content with scripts"
        ALWAYS = "always", "Always render in Chromium"
        NEVER = "never", "Never render (plain HTTP only)"

    class Stage(models.TextChoices):
        QUEUED = "queued", "Queued"
        CRAWLING = "crawling", "Crawling pages"
        DOWNLOADING = "downloading", "Downloading images"
        DEDUPLICATING = "deduplicating", "Deduplicating"
        STORING = "storing", "Storing"
        DONE = "done", "Done"

    start_url = models.URLField(max_length=2048)
    album = models.ForeignKey(
        "albums.Album",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="scrape_jobs",
    )
    album_name = models.CharField(max_length=200)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    # Options (the defaults are the polite ones).
    max_depth = models.PositiveSmallIntegerField(default=2)
    max_pages = models.PositiveIntegerField(default=50)
    max_images = models.PositiveIntegerField(default=500)
    render = models.CharField(max_length=8, choices=Render, default=Render.AUTO)
    min_width = models.PositiveIntegerField(default=128)
    min_height = models.PositiveIntegerField(default=128)
    min_megapixels = models.FloatField(default=0.0)
    max_aspect_ratio = models.FloatField(default=4.0)
    formats = models.JSONField(
        default=list, blank=True, help_text="Allowed formats; empty means all accepted."
    )
    near_duplicate_distance = models.PositiveSmallIntegerField(
        default=6,
        help_text="Hamming distance (of 64 bits) under which two images "
        "count as the same picture.",
    )
    near_duplicates = models.CharField(
        max_length=16,
        choices=NearDuplicates,
        default=NearDuplicates.REPLACE_SMALLER,
        help_text="What to do with an image that is a near duplicate of a "
        "library image (within near_duplicate_distance).",
    )
    respect_robots = models.BooleanField(default=True)
    politeness_delay = models.FloatField(
        default=1.0, help_text="Seconds between two requests to the same host."
    )
    per_host_concurrency = models.PositiveSmallIntegerField(default=2)
    max_seconds = models.PositiveIntegerField(default=1800)
    max_total_bytes = models.PositiveBigIntegerField(default=2 * 1024**3)

    # What happened.
    stage = models.CharField(max_length=16, choices=Stage, default=Stage.QUEUED)
    pages_fetched = models.PositiveIntegerField(default=0)
    images_found = models.PositiveIntegerField(default=0)
    images_downloaded = models.PositiveIntegerField(default=0)
    images_valid = models.PositiveIntegerField(default=0)
    images_duplicate = models.PositiveIntegerField(default=0)
    images_saved = models.PositiveIntegerField(default=0)
    images_failed = models.PositiveIntegerField(default=0)
    bytes_downloaded = models.PositiveBigIntegerField(default=0)

    task_path = "scraping.tasks.run_scrape_job"

    def __str__(self) -> str:
        return f"Scrape #{self.pk} {self.start_url}"


class CrawlLogEntry(models.Model):
    """One URL the crawler considered: what it did with it and why."""

    class Kind(models.TextChoices):
        PAGE = "page", "Page"
        IMAGE = "image", "Image"
        ROBOTS = "robots", "robots.txt"

    class Outcome(models.TextChoices):
        FETCHED = "fetched", "Fetched"
        SAVED = "saved", "Saved"
        DUPLICATE = "duplicate", "Exact duplicate"
        NEAR_DUPLICATE = "near_duplicate", "Near duplicate"
        INVALID = "invalid", "Invalid image"
        SKIPPED = "skipped", "Skipped"
        BLOCKED = "blocked", "Blocked (unsafe address)"
        FAILED = "failed", "Failed"

    job = models.ForeignKey(ScrapeJob, on_delete=models.CASCADE, related_name="log")
    kind = models.CharField(max_length=8, choices=Kind)
    url = models.URLField(max_length=2048)
    page_url = models.URLField(max_length=2048, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome)
    reason = models.CharField(max_length=500, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    bytes = models.PositiveBigIntegerField(default=0)
    elapsed_ms = models.PositiveIntegerField(default=0)
    image = models.ForeignKey(
        "albums.Image",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The image saved, or the one this duplicates.",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "crawl log entries"
        indexes = [
            # The job page's live log: a job's entries in order.
            models.Index(fields=["job", "id"], name="crawllog_job"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.outcome}: {self.url[:80]}"
