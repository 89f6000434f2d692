"""Labeling through the Message Batches API: half the price, results within 24 h.

A job with `use_batch` sends its images as batches of LABELING_BATCH_SIZE and
records each batch's id on the job as soon as it exists (a resumed job polls
those instead of paying twice). It does not wait on a worker: once sent, the
job is handed back waiting (RunWaiting), and a scheduled poller
(labeling.runs.labeling_batches_poll) records each batch when it has ended,
exactly as direct requests would (JobRunner._save): the same labels, the same
per-image failures, tokens at the batch price. The last one finishes the job.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage

from albums.models import Image
from imagineer_project.runs import RunCancelled, RunWaiting, run_checkpoint
from labeling import claude
from labeling.claude import AlbumContext, ImageLabelingFailed
from labeling.models import LabelingJob
from labeling.runner import JobRunner, album_contexts

logger = logging.getLogger(__name__)

PREFIX = "image-"


class BatchRunner(JobRunner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.price_factor = Decimal(str(settings.LABELING_BATCH_DISCOUNT))
        self.contexts: dict[int, AlbumContext] = {}

    def run(self) -> str:
        """Send what no attempt sent yet, then record what has ended already.
        The summary when every batch is recorded; else RunWaiting."""
        job, plan = self.job, self.plan
        run_checkpoint(job, done=self.done, total=plan.total, message=self._summary())
        self.contexts = album_contexts(job, plan.todo)
        self._submit_missing()
        return self.poll()

    def poll(self) -> str:
        """Record every batch that has ended; the final summary when none is
        left, else RunWaiting with what is still processing. A cancel asked
        for meanwhile cancels the rest (RunCancelled)."""
        job = self.job
        pending = [b for b in job.batches if not b.get("recorded")]
        # run() knows the contexts of what it just sent; a poller's turn, none.
        unknown = [
            pk for b in pending for pk in b["image_ids"] if pk not in self.contexts
        ]
        self.contexts.update(album_contexts(job, unknown))
        try:
            if job.cancel_requested:  # asked while the job waited for the API
                raise RunCancelled
            for batch in list(pending):
                if self._ended(batch):
                    self._record(batch)
                    pending.remove(batch)
            if pending:
                message = self._waiting_message(pending)
                LabelingJob.objects.filter(pk=job.pk).update(batches=job.batches)
                run_checkpoint(job, message=message)
                raise RunWaiting(message)
        except RunCancelled:
            self.cancel_pending()
            raise
        return self._summary(final=True)

    # --- submitting -------------------------------------------------------------------

    def _submit_missing(self) -> None:
        """Send, in batches, the planned images no earlier attempt sent."""
        sent = {pk for b in self.job.batches for pk in b["image_ids"]}
        todo = [pk for pk in self.plan.todo if pk not in sent]
        files = dict(Image.objects.filter(pk__in=todo).values_list("pk", "file"))
        size = settings.LABELING_BATCH_SIZE
        for start in range(0, len(todo), size):
            chunk = [pk for pk in todo[start : start + size] if pk in files]
            requests = [r for pk in chunk if (r := self._entry(pk, files[pk]))]
            if not requests:
                continue
            with claude.api_errors(self.job.model_name):
                try:
                    batch = self.client.messages.batches.create(requests=requests)
                except ImageLabelingFailed as exc:
                    raise RuntimeError(f"Could not send a batch: {exc.reason}") from exc
            ids = [int(r["custom_id"].removeprefix(PREFIX)) for r in requests]
            self.job.batches = [*self.job.batches, {"id": batch.id, "image_ids": ids}]
            LabelingJob.objects.filter(pk=self.job.pk).update(batches=self.job.batches)
            run_checkpoint(
                self.job, message=f"Sent batch {batch.id} ({len(ids)} images)"
            )

    def _entry(self, image_id: int, file_name: str) -> dict[str, Any] | None:
        try:
            with default_storage.open(file_name, "rb") as fh:
                params = claude.request_params(
                    image_data=fh.read(),
                    style=self.job.style,
                    context=self.contexts.get(image_id),
                    model=self.job.model_name,
                )
        except Exception as exc:  # unreadable file: this image only
            self._save(image_id, None, f"{type(exc).__name__}: {exc}", 0, 0)
            self._advance()
            return None
        return {"custom_id": f"{PREFIX}{image_id}", "params": params}

    # --- waiting and recording --------------------------------------------------------

    def _ended(self, batch: dict[str, Any]) -> bool:
        with claude.api_errors(self.job.model_name):
            try:
                found = self.client.messages.batches.retrieve(batch["id"])
            except ImageLabelingFailed as exc:
                logger.warning("Polling batch %s failed: %s", batch["id"], exc.reason)
                return False  # try again at the next poll
        batch["counts"] = found.request_counts.model_dump()
        return found.processing_status == "ended"

    def _waiting_message(self, pending: list[dict[str, Any]]) -> str:
        processing = sum(b.get("counts", {}).get("processing", 0) for b in pending)
        return (
            f"Waiting for {len(pending)} Message Batch(es), {processing} request(s) "
            f"processing; {self._summary()}"
        )

    def _record(self, batch: dict[str, Any]) -> None:
        """Write one ended batch's results; images it did not answer fail."""
        unanswered = set(batch["image_ids"])
        finished = set(self.job.items.values_list("image_id", flat=True))
        with claude.api_errors(self.job.model_name):
            for entry in self.client.messages.batches.results(batch["id"]):
                image_id = int(entry.custom_id.removeprefix(PREFIX))
                unanswered.discard(image_id)
                if image_id not in finished:
                    self._record_one(image_id, entry.result)
        for image_id in unanswered - finished:
            self._save(image_id, None, "The batch returned no result for it.", 0, 0)
            self._advance()
        batch["recorded"] = True
        LabelingJob.objects.filter(pk=self.job.pk).update(batches=self.job.batches)
        run_checkpoint(self.job, done=self.done, message=self._summary())

    def _record_one(self, image_id: int, result: Any) -> None:
        if result.type == "succeeded":
            try:
                parsed = claude.parse_reply(
                    result.message,
                    style=self.job.style,
                    context=self.contexts.get(image_id),
                )
            except ImageLabelingFailed as exc:
                self._save(
                    image_id, None, exc.reason, exc.input_tokens, exc.output_tokens
                )
            else:
                self._save(
                    image_id, parsed, "", parsed.input_tokens, parsed.output_tokens
                )
        elif result.type == "errored":
            error = getattr(getattr(result, "error", None), "error", None)
            message = getattr(error, "message", "") or "unknown error"
            self._save(image_id, None, f"API error in the batch: {message}", 0, 0)
        else:  # canceled, expired
            self._save(image_id, None, f"The batch request was {result.type}.", 0, 0)
        self._advance()

    def _advance(self) -> None:
        self.done += 1
        self.job.progress_done = self.done
        if self.on_progress:
            self.on_progress(self.job)

    def cancel_pending(self) -> None:
        """Ask the API to stop what has not ended; best effort."""
        for batch in (b for b in self.job.batches if not b.get("recorded")):
            try:
                self.client.messages.batches.cancel(batch["id"])
            except Exception:
                logger.warning("Could not cancel batch %s", batch["id"], exc_info=True)
