from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from albums.cli import album_from_arg
from imagineer_project.runs import RunCancelled, run_execute
from labeling.claude import LabelingNotConfigured
from labeling.models import LabelingJob
from labeling.runs import labeling_job_execute
from labeling.services import labeling_job_create


def _budget(value: str) -> Decimal:
    try:
        budget = Decimal(value)
    except InvalidOperation as exc:
        raise CommandError(f"--budget must be an amount in USD, not {value!r}") from exc
    if budget <= 0:
        raise CommandError("--budget must be more than 0")
    return budget


class Command(BaseCommand):
    help = (
        "Label the album NAME's images with Claude (captions, tags, NSFW rating). "
        "Skips images this prompt version already labeled unless --force. Runs "
        "here with a progress bar and a cost summary, or with --enqueue hands the "
        "job to the worker. Needs ANTHROPIC_API_KEY."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--album", required=True, help="album name or slug")
        parser.add_argument(
            "--style",
            choices=LabelingJob.Style.values,
            default=LabelingJob.Style.TRAINING,
            help="training captions (default) or descriptions",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="re-label images already labeled (a person's labels are kept)",
        )
        parser.add_argument("--limit", type=int, help="label at most N images")
        parser.add_argument("--budget", help="stop when the cost reaches this USD")
        parser.add_argument(
            "--batch",
            action="store_true",
            help="use the Message Batches API: half the price, results within 24 h",
        )
        parser.add_argument(
            "--enqueue", action="store_true", help="queue for the worker and return"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        album = album_from_arg(options["album"])
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        try:
            job = labeling_job_create(
                album=album,
                style=options["style"],
                force=options["force"],
                limit=options["limit"],
                budget_usd=_budget(options["budget"]) if options["budget"] else None,
                use_batch=options["batch"],
                enqueue=options["enqueue"],
            )
        except (LabelingNotConfigured, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if options["enqueue"]:
            self.stdout.write(f"Queued labeling job #{job.pk}; follow it in the admin.")
            return
        self._run(job)
        job.refresh_from_db()
        summary = (
            f"{job.message}\n{job.input_tokens:,} input and {job.output_tokens:,} "
            f"output tokens with {job.model_name}: about ${job.cost_usd:.4f}"
        )
        if job.status != LabelingJob.Status.SUCCEEDED:
            raise CommandError(
                f"Labeling job #{job.pk} {job.status}: {job.error}\n{summary}"
            )
        self.stdout.write(self.style.SUCCESS(summary))
        if job.failed_count:
            self.stdout.write(
                self.style.WARNING(
                    f"{job.failed_count} image(s) failed; job #{job.pk} in the admin "
                    "lists them with the reason."
                )
            )

    def _run(self, job: LabelingJob) -> None:
        with tqdm(total=0, unit="image", file=self.stderr._out) as bar:

            def progress(current: LabelingJob) -> None:
                bar.total = current.progress_total
                bar.n = current.progress_done
                bar.set_postfix_str(f"${current.cost_usd:.4f}", refresh=False)
                bar.refresh()

            def body(current: LabelingJob) -> str:
                try:
                    return labeling_job_execute(current, progress)
                except KeyboardInterrupt as exc:  # Ctrl-C: end as cancelled
                    raise RunCancelled from exc

            run_execute(LabelingJob, job.pk, body)
