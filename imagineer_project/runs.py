"""One state machine for every long job.

Scrape jobs, labeling jobs, bulk uploads, imports, training and generation runs
all inherit `BaseRun`. A worker claims a run with a conditional UPDATE (so a task
delivered twice runs once), reports progress through `run_checkpoint`, which also
refreshes the heartbeat and raises `RunCancelled` when someone asked to cancel,
and ends in exactly one terminal state. `reap_stale_runs` (scheduled) fails or
re-queues runs whose worker died.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

from django.apps import apps
from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

logger = logging.getLogger(__name__)

R = TypeVar("R", bound="BaseRun")


class RunCancelled(Exception):
    """Raised inside a run's body when a cancel was requested."""


class BaseRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    # Subclasses name the django-q2 task that executes them (it takes the run's id).
    task_path: str = ""
    task_cluster: str | None = None
    max_attempts: int = 3

    class Meta:
        abstract = True
        indexes = [
            # The reaper's scan: running runs by heartbeat age. Every subclass
            # gets its own copy, named after it (uploadrun_status, ...).
            models.Index(fields=["status", "heartbeat_at"], name="%(class)s_status"),
        ]

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def percent(self) -> int:
        if not self.progress_total:
            return 100 if self.status == self.Status.SUCCEEDED else 0
        return min(100, round(100 * self.progress_done / self.progress_total))


def run_enqueue(run: BaseRun) -> None:
    """Hand the run to the worker once the surrounding transaction commits."""
    from django_q.tasks import async_task

    options: dict[str, Any] = {"task_name": f"{run._meta.model_name}-{run.pk}"}
    if run.task_cluster:
        options["cluster"] = run.task_cluster
    transaction.on_commit(lambda: async_task(run.task_path, run.pk, q_options=options))


def run_claim(model: type[R], run_id: int) -> R | None:
    """Move a queued (or abandoned running) run to running; None if not ours to run.

    The conditional UPDATE is the lock: of two workers handed the same run, only
    one sees rowcount 1. A running run whose heartbeat is stale was abandoned by
    a dead worker and may be taken over.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS)
    claimable = Q(status=BaseRun.Status.QUEUED) | Q(
        status=BaseRun.Status.RUNNING, heartbeat_at__lt=stale
    )
    updated = model.objects.filter(claimable, pk=run_id, cancel_requested=False).update(
        status=BaseRun.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
        error="",
    )
    if updated != 1:
        _cancel_if_requested(model, run_id)
        return None
    return model.objects.get(pk=run_id)


def _cancel_if_requested(model: type[BaseRun], run_id: int) -> None:
    model.objects.filter(
        pk=run_id, status=BaseRun.Status.QUEUED, cancel_requested=True
    ).update(status=BaseRun.Status.CANCELLED, finished_at=timezone.now())


def run_checkpoint(
    run: BaseRun,
    *,
    done: int | None = None,
    total: int | None = None,
    message: str | None = None,
) -> None:
    """Record progress, refresh the heartbeat, and stop if a cancel was asked for."""
    changes: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if done is not None:
        changes["progress_done"] = run.progress_done = done
    if total is not None:
        changes["progress_total"] = run.progress_total = total
    if message is not None:
        changes["message"] = run.message = message[:500]
    type(run).objects.filter(pk=run.pk).update(**changes)
    if type(run).objects.filter(pk=run.pk, cancel_requested=True).exists():
        raise RunCancelled


def _finish(run: BaseRun, status: str, **fields: Any) -> None:
    fields.update(
        status=status, finished_at=timezone.now(), heartbeat_at=timezone.now()
    )
    type(run).objects.filter(pk=run.pk, status=BaseRun.Status.RUNNING).update(**fields)
    run.refresh_from_db()


def run_execute(model: type[R], run_id: int, body: Callable[[R], str]) -> R | None:
    """Claim the run, run `body`, and record exactly one terminal state.

    `body` returns the final message. Every task of every long job goes through
    here, so cancellation, failure and retries behave the same everywhere.
    """
    run = run_claim(model, run_id)
    if run is None:
        logger.info("%s %s not claimable; skipping", model.__name__, run_id)
        return None
    try:
        message = body(run)
    except RunCancelled:
        _finish(run, BaseRun.Status.CANCELLED, message="Cancelled")
    except Exception as exc:
        logger.exception("%s %s failed", model.__name__, run_id)
        _finish(run, BaseRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:5000])
    else:
        _finish(run, BaseRun.Status.SUCCEEDED, message=(message or "Done")[:500])
    return run


def run_request_cancel(run: BaseRun) -> bool:
    """Ask a run to stop. A queued run is cancelled at once; a running one at its
    next checkpoint. Returns False when the run had already ended (a cancelled
    one included), so callers need no status check of their own."""
    model = type(run)
    now = timezone.now()
    queued = model.objects.filter(pk=run.pk, status=BaseRun.Status.QUEUED).update(
        status=BaseRun.Status.CANCELLED, cancel_requested=True, finished_at=now
    )
    running = model.objects.filter(pk=run.pk, status=BaseRun.Status.RUNNING).update(
        cancel_requested=True
    )
    run.refresh_from_db()
    return queued + running == 1


def run_models() -> Iterator[type[BaseRun]]:
    for model in apps.get_models():
        if issubclass(model, BaseRun):
            yield model


def reap_stale_runs() -> dict[str, int]:
    """Fail, or re-queue while attempts remain, runs whose heartbeat went stale."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS)
    counts = {"requeued": 0, "failed": 0}
    for model in run_models():
        dead = model.objects.filter(
            status=BaseRun.Status.RUNNING, heartbeat_at__lt=stale
        )
        for run in dead:
            if run.attempts < run.max_attempts and not run.cancel_requested:
                # The claim in run_claim guards against the old delivery racing us.
                took = model.objects.filter(
                    pk=run.pk, status=BaseRun.Status.RUNNING, heartbeat_at__lt=stale
                ).update(
                    status=BaseRun.Status.QUEUED,
                    heartbeat_at=now,
                    message="Re-queued after the worker stopped responding",
                )
                if took:
                    run_enqueue(run)
                    counts["requeued"] += 1
            else:
                took = model.objects.filter(
                    pk=run.pk, status=BaseRun.Status.RUNNING, heartbeat_at__lt=stale
                ).update(
                    status=BaseRun.Status.FAILED,
                    finished_at=now,
                    error="The worker stopped responding (no heartbeat for "
                    f"{settings.RUN_STALE_AFTER_SECONDS}s).",
                )
                counts["failed"] += took
    if any(counts.values()):
        logger.warning("Reaped stale runs: %s", counts)
    return counts
