"""How a labeling job works through its images: which ones, in what order, how
many at once, at what cost. `JobRunner` sends direct requests;
labeling.batches.BatchRunner shares its planning and recording and sends
Message Batches instead.

Claude requests run in a small thread pool (LABELING_CONCURRENCY); only the
job's own thread touches the database, so results are written one image at a
time, each in its own transaction, with a LabelingItem row that makes the job
resumable: a re-delivered or re-queued job skips every image it already
finished.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F

from albums.models import Album, AlbumImage, Image
from imagineer_project.runs import RunCancelled, run_checkpoint
from labeling import claude
from labeling.claude import (
    AlbumContext,
    ImageLabelingFailed,
    LabelingAborted,
    LabelResult,
)
from labeling.models import Label, LabelingItem, LabelingJob
from labeling.services import labels_write_from_claude

logger = logging.getLogger(__name__)

Outcome = LabelingItem.Outcome

# --- planning ---------------------------------------------------------------------


def _target_ids(job: LabelingJob) -> list[int]:
    if job.image_ids:
        wanted = [int(pk) for pk in job.image_ids]
        present = set(Image.objects.filter(pk__in=wanted).values_list("pk", flat=True))
        return [pk for pk in dict.fromkeys(wanted) if pk in present]
    if job.album_id is None:
        return []  # the album was deleted after the job was made
    return list(
        AlbumImage.objects.filter(album_id=job.album_id)
        .order_by("position", "id")
        .values_list("image_id", flat=True)
    )


def _already_labeled(job: LabelingJob, ids: list[int]) -> set[int]:
    """Images that already carry this prompt version's text from Claude."""
    found: set[int] = set()
    for start in range(0, len(ids), 500):
        found.update(
            Label.objects.filter(
                image_id__in=ids[start : start + 500],
                source=Label.Source.CLAUDE,
                kind=job.label_kind,
                prompt_version=job.prompt_version,
            ).values_list("image_id", flat=True)
        )
    return found


@dataclass
class Plan:
    todo: list[int]  # images still to send, in order
    total: int  # what the progress bar counts to
    done: int  # already finished (skipped, or done by an earlier attempt)


def plan_job(job: LabelingJob) -> Plan:
    ids = _target_ids(job)
    finished = set(job.items.values_list("image_id", flat=True))
    skipped = set() if job.force else _already_labeled(job, ids) - finished
    todo = [pk for pk in ids if pk not in finished and pk not in skipped]
    if job.limit is not None:
        todo = todo[: max(0, job.limit - len(finished))]
    LabelingJob.objects.filter(pk=job.pk).update(skipped_count=len(skipped))
    job.skipped_count = len(skipped)
    done = len(finished) + len(skipped)
    return Plan(todo=todo, total=done + len(todo), done=done)


def album_contexts(job: LabelingJob, ids: list[int]) -> dict[int, AlbumContext]:
    """The album each image is described in: the job's album, else the first
    album that holds the image."""
    if job.album is not None:
        ctx = _context(job.album)
        return dict.fromkeys(ids, ctx)
    contexts: dict[int, AlbumContext] = {}
    members = (
        AlbumImage.objects.filter(image_id__in=ids)
        .select_related("album")
        .order_by("id")
    )
    for member in members:
        contexts.setdefault(member.image_id, _context(member.album))
    return contexts


def _context(album: Album) -> AlbumContext:
    return AlbumContext(album.name, album.description, album.trigger_word)


# --- running ----------------------------------------------------------------------


def _request(
    client: Any, job: LabelingJob, file_name: str, ctx: AlbumContext | None
) -> LabelResult:
    """Runs in a pool thread: no database access here."""
    with default_storage.open(file_name, "rb") as fh:
        data = fh.read()
    return claude.label_image(
        client, image_data=data, style=job.style, context=ctx, model=job.model_name
    )


class JobRunner:
    """Feeds images to the pool, records each answer, watches cost and cancel."""

    def __init__(
        self,
        job: LabelingJob,
        client: Any,
        on_progress: Callable[[LabelingJob], None] | None = None,
        *,
        plan: Plan | None = None,
    ) -> None:
        self.job = job
        self.client = client
        self.on_progress = on_progress
        self.plan = plan or plan_job(job)
        self.done = self.plan.done
        self.api_errors_in_a_row = 0
        # What earlier deliveries spent, and on how many requests, so a resumed
        # job's budget estimate starts from a true average.
        self.cost = job.cost_usd
        self.requests = job.labeled_count + job.failed_count
        self.price_factor = Decimal(1)

    def run(self) -> str:
        job, plan = self.job, self.plan
        run_checkpoint(
            job,
            done=self.done,
            total=plan.total,
            message=f"Labeling {len(plan.todo)} image(s): {self._summary()}",
        )
        self.files = dict(
            Image.objects.filter(pk__in=plan.todo).values_list("pk", "file")
        )
        self.contexts = album_contexts(job, plan.todo)
        self.work = iter(plan.todo)
        pending: dict[Future, int] = {}
        with ThreadPoolExecutor(settings.LABELING_CONCURRENCY) as pool:
            try:
                self._fill(pool, pending, busy=0)
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    # Refill before writing results, so the database work of
                    # this thread overlaps the requests in flight.
                    self._fill(pool, pending, busy=len(pending) - len(finished))
                    for future in finished:
                        # Out of `pending` first: if recording it aborts the
                        # job, the drain must not record it a second time.
                        self._record(pending.pop(future), future)
                    # And again with what the recorded results cost.
                    self._fill(pool, pending, busy=len(pending))
            except (RunCancelled, LabelingAborted):
                # Requests already sent are paid for: keep their labels, and
                # let the job's progress count them.
                self._drain(pending)
                LabelingJob.objects.filter(pk=job.pk).update(progress_done=self.done)
                raise
        return self._summary(final=True)

    def _fill(
        self, pool: ThreadPoolExecutor, pending: dict[Future, int], *, busy: int
    ) -> None:
        """Submit images until `busy` requests are in flight (or the budget says
        stop). Results not yet recorded count toward the budget estimate."""
        while busy < settings.LABELING_CONCURRENCY and not self._over_budget(
            len(pending)
        ):
            image_id = next(self.work, None)
            if image_id is None:
                return
            if image_id not in self.files:
                continue  # deleted since planning
            file_name, ctx = self.files[image_id], self.contexts.get(image_id)
            future = pool.submit(_request, self.client, self.job, file_name, ctx)
            pending[future] = image_id
            busy += 1

    def _over_budget(self, in_flight: int) -> bool:
        """Stop sending when what is spent, plus what is in flight and one more
        request (each at the average so far), would pass the budget."""
        budget = self.job.budget_usd
        if budget is None:
            return False
        if not self.requests:
            # No price per image known yet: one request first, to learn it.
            return in_flight > 0
        average = self.cost / self.requests
        # Would one more request (at the average so far) go past the budget?
        if self.cost + average * (in_flight + 1) > budget:
            if not self.job.budget_exhausted:
                self.job.budget_exhausted = True
                LabelingJob.objects.filter(pk=self.job.pk).update(budget_exhausted=True)
            return True
        return False

    def _drain(self, pending: dict[Future, int]) -> None:
        for future in list(pending):
            future.cancel()
        for future, image_id in pending.items():
            if not future.cancelled():
                with contextlib.suppress(LabelingAborted):
                    self._record(image_id, future, checkpoint=False)

    def _record(
        self, image_id: int, future: Future, *, checkpoint: bool = True
    ) -> None:
        try:
            result = future.result()
        except ImageLabelingFailed as exc:
            self._save(image_id, None, exc.reason, exc.input_tokens, exc.output_tokens)
            self.api_errors_in_a_row = (
                self.api_errors_in_a_row + 1 if exc.api_error else 0
            )
        except LabelingAborted:
            raise
        except Exception as exc:  # unreadable file, a bug: this image only
            logger.exception("Labeling image %s failed", image_id)
            self._save(image_id, None, f"{type(exc).__name__}: {exc}", 0, 0)
        else:
            # The caption goes in a field the redact filter masks.
            logger.debug(
                "Labeled image %s", image_id, extra={"caption": result.caption}
            )
            self._save(image_id, result, "", result.input_tokens, result.output_tokens)
            self.api_errors_in_a_row = 0
        self.done += 1
        self.job.progress_done = self.done
        if self.on_progress:
            self.on_progress(self.job)
        if self.api_errors_in_a_row >= settings.LABELING_MAX_CONSECUTIVE_API_ERRORS:
            raise LabelingAborted(
                f"{self.api_errors_in_a_row} requests in a row failed at the API; "
                "stopping (the last: see the job's failures)."
            )
        if checkpoint:
            run_checkpoint(self.job, done=self.done, message=self._summary())

    def _save(
        self,
        image_id: int,
        result: LabelResult | None,
        reason: str,
        input_tokens: int,
        output_tokens: int,
    ) -> None:
        job = self.job
        cost = (
            claude.request_cost(input_tokens, output_tokens) * self.price_factor
        ).quantize(Decimal("0.000001"))
        with transaction.atomic():
            item, created = LabelingItem.objects.get_or_create(
                job=job,
                image_id=image_id,
                defaults={
                    "outcome": Outcome.FAILED if result is None else Outcome.LABELED,
                    "reason": reason[:500],
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                },
            )
            if not created:
                return  # recorded by an earlier delivery of this job
            self.requests += 1
            self.cost += cost
            if result is not None:
                image = Image.objects.get(pk=image_id)
                labels_write_from_claude(
                    image=image,
                    result=result,
                    kind=job.label_kind,
                    model_name=result.model or job.model_name,
                    prompt_version=job.prompt_version,
                )
            counter = "failed_count" if result is None else "labeled_count"
            LabelingJob.objects.filter(pk=job.pk).update(
                **{counter: F(counter) + 1},
                input_tokens=F("input_tokens") + input_tokens,
                output_tokens=F("output_tokens") + output_tokens,
                cost_usd=F("cost_usd") + cost,
            )
        job.refresh_from_db(
            fields=[
                "labeled_count",
                "failed_count",
                "input_tokens",
                "output_tokens",
                "cost_usd",
            ]
        )

    def _summary(self, final: bool = False) -> str:
        job = self.job
        text = (
            f"{job.labeled_count} labeled, {job.skipped_count} skipped, "
            f"{job.failed_count} failed; {job.input_tokens:,} tokens in, "
            f"{job.output_tokens:,} out, about ${job.cost_usd:.4f}"
        )
        if final and job.budget_exhausted:
            text = f"Stopped at the ${job.budget_usd} budget: {text}"
        return text
