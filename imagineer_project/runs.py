"""One state machine for every long job, and the only code that moves a run
from one state to another.

Scrape jobs, labeling jobs, uploads and folder imports, dataset builds and
exports, training runs and generation jobs all inherit `BaseRun`:

    queued ──claim──▶ running ──body returns──▶ succeeded
      │                 │ ├─body raises──────▶ failed
      │                 │ ├─RunCancelled─────▶ cancelled
      │                 │ └─RunWaiting───────▶ running, waiting (worker freed;
      │                 │                      a poller calls run_finish)
      └─cancel─▶ cancelled   worker died: reaped (below)

    failed | cancelled ──run_retry──▶ queued (same row, resumes)

- A worker claims a run with a conditional UPDATE (`run_claim`), so a task
  delivered twice runs once.
- The body reports progress through `run_checkpoint`, which refreshes the
  heartbeat and raises `RunCancelled` once someone asked to cancel; every body
  also runs under `run_heartbeat`, a thread that keeps the heartbeat fresh
  through long steps that have no checkpoints (loading a model, copying data).
- `reap_stale_runs` (scheduled) finds running runs whose heartbeat went stale:
  the worker died. One whose cancel was asked for ends cancelled; one with
  attempts left is queued again through `run_retry` and resumes; the rest
  fail.
- `run_retry` means one thing for every kind: queue the same row again; its
  body picks up where the last attempt stopped.
- Whenever a run ends, its kind's `on_end_path` runs (clean-up, such as the
  staged files of an upload).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, TypeVar

from django.apps import apps
from django.conf import settings
from django.db import connections, models, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from imagineer_project.errors import Conflict
from imagineer_project.logging import log_run

logger = logging.getLogger(__name__)

R = TypeVar("R", bound="BaseRun")

# Who else wants to hear of each checkpoint in this process: a command's
# progress bar (run_progress).
_listener: ContextVar[Callable[[Any], None] | None] = ContextVar(
    "run_progress_listener", default=None
)


class RunCancelled(Exception):
    """Raised inside a run's body when a cancel was requested."""


class RunWaiting(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by a body that handed its work to a service outside (a Message
    Batch) and frees the worker: the run stays running, marked waiting, until
    a poller calls `run_finish` (or the reaper sees no poll for too long)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RunNotRetryable(Conflict):
    """Only a failed or cancelled run can be queued again."""

    code = "run_not_retryable"


class BaseRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    RETRYABLE = (Status.FAILED, Status.CANCELLED)

    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Running with no worker on it: the body handed its work to a service
    # outside and a poller finishes the run (RunWaiting).
    waiting = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    # Subclasses name the django-q2 task that executes them (it takes the run's
    # id), and optionally a function(run) called once the run has ended.
    task_path: str = ""
    task_cluster: str | None = None
    on_end_path: str = ""
    max_attempts: int = 3
    # What run_retry says a queued-again run will do.
    resume_note: str = "Queued again; it resumes where it stopped"

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
    def can_retry(self) -> bool:
        return self.status in self.RETRYABLE

    @property
    def percent(self) -> int:
        if not self.progress_total:
            return 100 if self.status == self.Status.SUCCEEDED else 0
        return min(100, round(100 * self.progress_done / self.progress_total))

    def retry_refusal(self) -> str:
        """Why this run cannot be queued again even though it ended failed or
        cancelled ("" when it can). Kinds whose inputs are gone say so."""
        return ""


# --- queueing and claiming ----------------------------------------------------------


def run_enqueue(run: BaseRun) -> None:
    """Hand the run to the worker once the surrounding transaction commits."""
    from django_q.tasks import async_task

    options: dict[str, Any] = {"task_name": f"{run._meta.model_name}-{run.pk}"}
    if run.task_cluster:
        options["cluster"] = run.task_cluster
    transaction.on_commit(lambda: async_task(run.task_path, run.pk, q_options=options))


def _stale_before() -> Any:
    return timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS)


def run_claim(model: type[R], run_id: int) -> R | None:
    """Move a queued (or abandoned running) run to running; None if not ours to run.

    The conditional UPDATE is the lock: of two workers handed the same run, only
    one sees rowcount 1. A running run whose heartbeat is stale was abandoned by
    a dead worker (or a dead poller) and may be taken over.
    """
    now = timezone.now()
    claimable = Q(status=BaseRun.Status.QUEUED) | Q(
        status=BaseRun.Status.RUNNING, heartbeat_at__lt=_stale_before()
    )
    updated = model.objects.filter(claimable, pk=run_id, cancel_requested=False).update(
        status=BaseRun.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        waiting=False,
        attempts=F("attempts") + 1,
        error="",
    )
    if updated != 1:
        return None
    return model.objects.get(pk=run_id)


def run_retry(run: BaseRun, *, after_crash: bool = False) -> BaseRun:
    """Queue the run again, on the same row; its body resumes where the last
    attempt stopped (every body is written to resume).

    A person retries a failed or cancelled run: its attempts start again from
    zero. The reaper retries a running run whose worker died (`after_crash`):
    its attempts keep counting, so a run that kills its worker every time
    fails in the end. Raises RunNotRetryable for a run in any other state.
    """
    model = type(run)
    now = timezone.now()
    if after_crash:
        runs = model.objects.filter(
            pk=run.pk,
            status=BaseRun.Status.RUNNING,
            heartbeat_at__lt=_stale_before(),
            cancel_requested=False,
        )
        changes: dict[str, Any] = {
            "message": "Queued again after the worker stopped responding"
        }
    else:
        refusal = run.retry_refusal() if run.can_retry else ""
        if refusal:
            raise RunNotRetryable(refusal)
        runs = model.objects.filter(pk=run.pk, status__in=BaseRun.RETRYABLE)
        changes = {
            "attempts": 0,
            "error": "",
            "finished_at": None,
            "cancel_requested": False,
            "message": run.resume_note,
        }
    with transaction.atomic():
        took = runs.update(
            status=BaseRun.Status.QUEUED, waiting=False, heartbeat_at=now, **changes
        )
        run.refresh_from_db()
        if not took:
            raise RunNotRetryable(
                f"{_what(run)} {run.pk} is {run.status}; only a failed or "
                "cancelled one can be queued again."
            )
        run_enqueue(run)
    return run


def _what(run: BaseRun) -> str:
    return str(run._meta.verbose_name).capitalize()


# --- while it runs -------------------------------------------------------------------


def run_checkpoint(
    run: BaseRun,
    *,
    done: int | None = None,
    total: int | None = None,
    message: str | None = None,
    fields: dict[str, Any] | None = None,
) -> None:
    """Record progress (and the kind's own progress `fields`, in the same
    write), refresh the heartbeat, and stop if a cancel was asked for."""
    changes: dict[str, Any] = {"heartbeat_at": timezone.now(), **(fields or {})}
    for name, value in (fields or {}).items():
        setattr(run, name, value)
    if done is not None:
        changes["progress_done"] = run.progress_done = done
    if total is not None:
        changes["progress_total"] = run.progress_total = total
    if message is not None:
        changes["message"] = run.message = message[:500]
    type(run).objects.filter(pk=run.pk).update(**changes)
    if (listener := _listener.get()) is not None:
        listener(run)
    if type(run).objects.filter(pk=run.pk, cancel_requested=True).exists():
        raise RunCancelled


@contextlib.contextmanager
def run_progress(listener: Callable[[Any], None]) -> Iterator[None]:
    """Call `listener(run)` at every checkpoint of the runs executed inside
    (in this thread): how a command draws a progress bar for any kind."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


@contextlib.contextmanager
def run_heartbeat(run: BaseRun) -> Iterator[None]:
    """Refresh the run's heartbeat from a thread while the body works, so a long
    step without checkpoints (loading or downloading a model, copying a
    dataset, a slow page) never looks like a dead worker to the reaper.

    Only the heartbeat: cancel is still noticed at the body's next checkpoint.
    If the worker process dies, the thread dies with it and the run goes stale.
    """
    stop = threading.Event()
    model = type(run)

    def beat() -> None:
        try:
            while not stop.wait(settings.RUN_HEARTBEAT_SECONDS):
                model.objects.filter(pk=run.pk, status=BaseRun.Status.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        except Exception:
            logger.exception("Heartbeat of %s %s stopped", model.__name__, run.pk)
        finally:
            connections.close_all()  # this thread's connections only

    name = f"heartbeat-{run._meta.model_name}-{run.pk}"
    thread = threading.Thread(target=beat, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def run_execute(model: type[R], run_id: int, body: Callable[[R], str]) -> R | None:
    """Claim the run, run `body` under a heartbeat, and record how it ended.

    `body` returns the final message. Every task of every long job goes through
    here, so cancellation, failure, waiting and retries behave the same
    everywhere.
    """
    run = run_claim(model, run_id)
    if run is None:
        logger.info("%s %s not claimable; skipping", model.__name__, run_id)
        return None
    run_body(run, body)
    return run


def run_body(run: R, body: Callable[[R], str]) -> str:
    """Run `body(run)` under a heartbeat and end the run by how it came back:
    "succeeded", "failed", "cancelled", or "waiting" (still running, handed to
    a poller). run_execute's second half, and a poller's whole turn."""
    # Every line logged while it runs (the failure's too) names the run.
    with log_run(f"{run._meta.model_name}:{run.pk}"):
        return _run_body(run, body)


def _run_body(run: R, body: Callable[[R], str]) -> str:
    try:
        with run_heartbeat(run):
            message = body(run)
    except RunCancelled:
        run_finish(run, BaseRun.Status.CANCELLED, message="Cancelled")
        return "cancelled"
    except RunWaiting as waiting:
        _wait(run, waiting.message)
        return "waiting"
    except Exception as exc:
        logger.exception("%s %s failed", type(run).__name__, run.pk)
        run_finish(run, BaseRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    run_finish(run, BaseRun.Status.SUCCEEDED, message=message or "Done")
    return "succeeded"


def _wait(run: BaseRun, message: str) -> None:
    type(run).objects.filter(pk=run.pk, status=BaseRun.Status.RUNNING).update(
        waiting=True, message=message[:500], heartbeat_at=timezone.now()
    )
    run.refresh_from_db()


def run_poll_claim(run: BaseRun) -> bool:
    """Take a waiting run for one poll: refresh its heartbeat if nobody else
    did since we read it. Of two pollers that read the same row, one wins."""
    took = (
        type(run)
        .objects.filter(
            pk=run.pk,
            status=BaseRun.Status.RUNNING,
            waiting=True,
            heartbeat_at=run.heartbeat_at,
        )
        .update(heartbeat_at=timezone.now())
    )
    run.refresh_from_db()
    return took == 1


def waiting_runs(model: type[R]) -> models.QuerySet[R]:
    """Runs of `model` whose worker handed them to a poller."""
    return model.objects.filter(status=BaseRun.Status.RUNNING, waiting=True)


# --- ending --------------------------------------------------------------------------


def run_finish(
    run: BaseRun, status: str, *, message: str | None = None, error: str = ""
) -> bool:
    """End a running run in `status` (succeeded, failed or cancelled); False when
    it was not running any more (someone else ended or re-queued it)."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "heartbeat_at": now,
        "waiting": False,
    }
    if message is not None:
        fields["message"] = message[:500]
    if error:
        fields["error"] = error[:5000]
    took = (
        type(run)
        .objects.filter(pk=run.pk, status=BaseRun.Status.RUNNING)
        .update(**fields)
    )
    run.refresh_from_db()
    if took:
        _on_end(run)
    return bool(took)


def _on_end(run: BaseRun) -> None:
    """The kind's clean-up once a run has ended; its failure is logged, not
    raised (the run's outcome is already recorded)."""
    if not run.on_end_path:
        return
    try:
        import_string(run.on_end_path)(run)
    except Exception:
        logger.exception("Clean-up of %s %s failed", type(run).__name__, run.pk)


def run_request_cancel(run: BaseRun) -> bool:
    """Ask a run to stop. A queued run is cancelled at once; a running one at its
    next checkpoint (a waiting one at its next poll). Returns False when the
    run had already ended (a cancelled one included), so callers need no status
    check of their own."""
    model = type(run)
    now = timezone.now()
    queued = model.objects.filter(pk=run.pk, status=BaseRun.Status.QUEUED).update(
        status=BaseRun.Status.CANCELLED,
        cancel_requested=True,
        finished_at=now,
        message="Cancelled before it started",
    )
    running = model.objects.filter(pk=run.pk, status=BaseRun.Status.RUNNING).update(
        cancel_requested=True
    )
    run.refresh_from_db()
    if queued:
        _on_end(run)
    return queued + running == 1


def run_cancel(run: BaseRun) -> BaseRun:
    """run_request_cancel for callers that answer a person: raises Conflict
    when the run had already ended."""
    if not run_request_cancel(run):
        raise Conflict(f"{_what(run)} {run.pk} already ended ({run.status}).")
    return run


# --- runs spread over sub-tasks ------------------------------------------------------

CHUNKS_PER_WORKER = 4


def run_chunks(total: int, *, min_size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of a run's `total` items for chunk sub-tasks: a few
    per worker process of the general cluster, so a slow chunk leaves no worker
    idle, and never smaller than `min_size` (each chunk lists the run's items
    again). One range when the run is small."""
    workers = settings.Q_CLUSTER.get("workers", 1)
    size = max(min_size, -(-total // (workers * CHUNKS_PER_WORKER)))
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def run_chunks_enqueue(
    run: BaseRun, task_path: str, chunks: list[tuple[int, int]]
) -> None:
    """Queue `task_path(run_id, start, stop)` on the general cluster for each
    chunk. Under Q_SYNC they run inline: the run may have ended on return."""
    from django_q.tasks import async_task

    name = run._meta.model_name
    for start, stop in chunks:
        async_task(
            task_path,
            run.pk,
            start,
            stop,
            q_options={"task_name": f"{name}-{run.pk}-{start}"},
        )


def run_chunks_in_pool(
    run: BaseRun,
    pool: Any,
    task: Callable[[int, int, int], str],
    chunks: list[tuple[int, int]],
    *,
    poll_seconds: float = 0.5,
) -> None:
    """Run `task(run_id, start, stop)` for each chunk on `pool`, a process pool
    of this machine (a command's foreground run spread as the worker spreads
    it), checkpointing the run while they work: heartbeat, progress for a
    listener (run_progress), and RunCancelled once a cancel was asked for (the
    chunks stop at their own next checkpoint). A chunk's error is raised."""
    pending = pool.starmap_async(
        task, [(run.pk, start, stop) for start, stop in chunks], chunksize=1
    )
    while not pending.ready():
        pending.wait(poll_seconds)
        run.refresh_from_db(fields=["status", "progress_done", "progress_total"])
        if run.status != BaseRun.Status.RUNNING:
            break  # a chunk ended it (its last file, or a cancel)
        run_checkpoint(run)
    pending.get()


def run_chunk_execute(model: type[R], run_id: int, body: Callable[[R], None]) -> str:
    """A chunk sub-task: `body(run)` while the run is running ("not running"
    otherwise: it ended, or a copy of this chunk ended it). A cancel noticed in
    the body ends the run cancelled. The body records each item once, so a
    chunk delivered twice, or beside a copy of itself, does no harm."""
    run = model.objects.filter(pk=run_id, status=BaseRun.Status.RUNNING).first()
    if run is None:
        return "not running"
    try:
        body(run)
    except RunCancelled:
        run_finish(run, BaseRun.Status.CANCELLED, message="Cancelled")
        return "cancelled"
    return "done"


# --- the reaper ----------------------------------------------------------------------


def run_models() -> Iterator[type[BaseRun]]:
    for model in apps.get_models():
        if issubclass(model, BaseRun):
            yield model


def reap_stale_runs() -> dict[str, int]:
    """End or re-queue every running run whose heartbeat went stale.

    The worker (or the poller of a waiting run) died. A run whose cancel was
    asked for ends cancelled: that is what the person wanted, and nobody is
    left to notice it at a checkpoint. A run with attempts left is queued
    again and resumes; the rest fail.
    """
    counts = {"requeued": 0, "cancelled": 0, "failed": 0}
    for model in run_models():
        dead = model.objects.filter(
            status=BaseRun.Status.RUNNING, heartbeat_at__lt=_stale_before()
        )
        for run in dead:
            outcome = _reap(run)
            if outcome:
                counts[outcome] += 1
    if any(counts.values()):
        logger.warning("Reaped stale runs: %s", counts)
    return counts


def _reap(run: BaseRun) -> str:
    """What became of one stale run ("" when it turned out to be alive)."""
    if run.attempts < run.max_attempts and not run.cancel_requested:
        try:
            run_retry(run, after_crash=True)
        except RunNotRetryable:
            return ""  # it beat again, or a redelivered task took it over
        return "requeued"
    # Take it only if it is still stale: the claim guards against a worker
    # that was slow, not dead.
    took = (
        type(run)
        .objects.filter(
            pk=run.pk, status=BaseRun.Status.RUNNING, heartbeat_at__lt=_stale_before()
        )
        .update(heartbeat_at=timezone.now())
    )
    if not took:
        return ""
    if run.cancel_requested:
        run_finish(
            run,
            BaseRun.Status.CANCELLED,
            message="Cancelled (its worker had stopped responding)",
        )
        return "cancelled"
    run_finish(
        run,
        BaseRun.Status.FAILED,
        error="The worker stopped responding (no heartbeat for "
        f"{settings.RUN_STALE_AFTER_SECONDS}s).",
    )
    return "failed"
