from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from albums.cli import album_from_arg
from imagineer_project.cli import run_in_foreground
from imagineer_project.errors import DomainError
from imagineer_project.runs import run_poll_claim, run_request_cancel
from labeling.models import LabelingJob
from labeling.runs import labeling_batch_poll, labeling_job_execute
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
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        if options["enqueue"]:
            self.stdout.write(f"Queued labeling job #{job.pk}; follow it in the admin.")
            return
        job = run_in_foreground(
            job,
            labeling_job_execute,
            stream=self.stderr._out,
            unit="image",
            postfix=lambda current: f"${current.cost_usd:.4f}",
        )
        if job.waiting:
            job = self._wait_for_batches(job)
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

    def _wait_for_batches(self, job: LabelingJob) -> LabelingJob:
        """Poll the job's Message Batches here until they have ended, as the
        scheduled poller would; Ctrl-C cancels the job and its batches."""
        self.stderr.write(f"{job.message}; waiting here (Ctrl-C cancels).")
        while job.status == LabelingJob.Status.RUNNING and job.waiting:
            try:
                time.sleep(settings.LABELING_BATCH_POLL_SECONDS)
            except KeyboardInterrupt:
                run_request_cancel(job)
            if run_poll_claim(job):
                labeling_batch_poll(job)
            job.refresh_from_db()
        return job
