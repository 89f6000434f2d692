from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from albums.models import NearDuplicates
from imagineer_project.cli import run_in_foreground
from imagineer_project.errors import Invalid
from scraping.models import ScrapeJob
from scraping.runs import scrape_job_execute
from scraping.services import scrape_job_create

# The option that sets each job field, for error messages.
OPTION = {
    "url": "URL",
    "album_name": "--album",
    "max_depth": "--max-depth",
    "max_pages": "--max-pages",
    "max_images": "--max-images",
    "politeness_delay": "--delay",
    "near_duplicates": "--near-duplicates",
}


class Command(BaseCommand):
    help = (
        "Crawl URL and fill the album NAME with its images (deduplicated, validated, "
        "captioned from the page). Runs here with a progress bar, or with --enqueue "
        "hands the job to the worker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url")
        parser.add_argument(
            "--album", required=True, help="album name (created if new)"
        )
        parser.add_argument("--max-depth", type=int, default=2)
        parser.add_argument("--max-pages", type=int, default=50)
        parser.add_argument("--max-images", type=int, default=500)
        parser.add_argument("--render", choices=ScrapeJob.Render.values, default="auto")
        parser.add_argument(
            "--delay",
            type=float,
            default=1.0,
            help="seconds between requests to one host (default 1)",
        )
        parser.add_argument(
            "--near-duplicates",
            choices=NearDuplicates.values,
            default=NearDuplicates.REPLACE_SMALLER,
            help="an image within the near-duplicate distance of a library image: "
            "keep both, skip it, or keep the larger (default replace_smaller)",
        )
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="queue the job for the worker and return",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            job = scrape_job_create(
                url=options["url"],
                album_name=options["album"],
                enqueue=options["enqueue"],
                max_depth=options["max_depth"],
                max_pages=options["max_pages"],
                max_images=options["max_images"],
                render=options["render"],
                politeness_delay=options["delay"],
                near_duplicates=options["near_duplicates"],
            )
        except Invalid as exc:
            lines = (f"{OPTION.get(k, k)}: {v}" for k, v in exc.errors.items())
            raise CommandError(
                f"Refusing {options['url']}: " + "; ".join(lines)
            ) from exc
        if options["enqueue"]:
            self.stdout.write(f"Queued scrape job #{job.pk}; follow it in the admin.")
            return
        job = run_in_foreground(
            job,
            scrape_job_execute,
            stream=self.stderr._out,
            unit="step",
            postfix=lambda j: f"{j.get_stage_display()}, saved {j.images_saved}",
        )
        if job.status != ScrapeJob.Status.SUCCEEDED:
            raise CommandError(
                f"Scrape job #{job.pk} {job.status}: {job.error or job.message}"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"{job.message}\nAlbum '{job.album.name}': /albums/{job.album.slug}/ "
                f"(job #{job.pk}; crawl log in the admin)"
            )
        )
