from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from imagineer_project.runs import run_execute
from scraping.models import ScrapeJob
from scraping.runs import scrape_job_execute
from scraping.safe_fetch import BlockedURL, check_url
from scraping.services import scrape_job_create


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
            "--enqueue",
            action="store_true",
            help="queue the job for the worker and return",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from django.conf import settings

        try:
            check_url(
                options["url"], allow_private=settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES
            )
        except BlockedURL as exc:
            raise CommandError(f"Refusing {options['url']}: {exc.reason}") from exc
        job = scrape_job_create(
            url=options["url"],
            album_name=options["album"],
            enqueue=options["enqueue"],
            max_depth=options["max_depth"],
            max_pages=options["max_pages"],
            max_images=options["max_images"],
            render=options["render"],
            politeness_delay=options["delay"],
        )
        if options["enqueue"]:
            self.stdout.write(f"Queued scrape job #{job.pk}; follow it in the admin.")
            return
        with tqdm(total=0, unit="step", file=self.stderr._out) as bar:

            def progress(current: ScrapeJob) -> None:
                bar.total = current.progress_total
                bar.n = current.progress_done
                bar.set_description(current.get_stage_display(), refresh=False)
                bar.set_postfix_str(f"saved {current.images_saved}", refresh=False)
                bar.refresh()

            run_execute(ScrapeJob, job.pk, lambda j: scrape_job_execute(j, progress))
        job.refresh_from_db()
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
