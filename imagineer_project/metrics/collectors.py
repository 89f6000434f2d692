"""What GET /metrics reads at scrape time: the database, the broker, the disk.

Computed per scrape, not counted in a process, so the figures are the same
whichever web process answers and include work done by workers on other hosts.
Each source is a function yielding metric families; one that fails is logged
and reported as `imagineer_metrics_source_up{source=...} 0` instead of
failing the whole scrape (a monitor still sees the rest).

Sources register with `metrics_register`: the built-in ones below, and each
app's own from its AppConfig.ready() (albums, labeling, training: metrics.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    Sum,
)
from django.utils import timezone
from prometheus_client.core import (
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from imagineer_project.disk import disk_filesystems, disk_places
from imagineer_project.runs import BaseRun, run_models

logger = logging.getLogger(__name__)

Source = Callable[[], Iterable[Metric]]
_sources: dict[str, Source] = {}

# Run durations span a second (a tiny import) to a day (a long training run).
DURATION_BUCKETS = (1, 5, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400)
# The windows of "runs that ended lately": an hour for the failure rate, a day
# for durations (a training run may take hours).
RECENT = timedelta(hours=1)
DURATION_WINDOW = timedelta(hours=24)
# A worker cluster that reported within this many seconds counts as alive
# (the same rule as /api/health).
WORKER_FRESH_SECONDS = 60


def metrics_register(name: str, source: Source) -> None:
    """Add a scrape-time source (registering a name again replaces it)."""
    _sources[name] = source


class DatabaseCollector:
    """A prometheus-client collector running every registered source."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "imagineer_metrics_source_up",
            "1 when the source's figures could be read this scrape, else 0.",
            labels=["source"],
        )
        for name, source in _sources.items():
            try:
                families = list(source())
            except Exception:
                logger.exception("Metrics source %s failed", name)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up


def kind_of(model: type[BaseRun]) -> str:
    """A run kind's label: its model name ("scrapejob", "trainingrun")."""
    return model._meta.model_name or model.__name__.lower()


# --- runs -----------------------------------------------------------------------------


def runs_by_status() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "imagineer_runs",
        "Runs in the database by kind and status (every pair, zeros included).",
        labels=["kind", "status"],
    )
    for model in run_models():
        counts = dict(
            model.objects.values_list("status").annotate(n=Count("pk")).order_by()
        )
        for status in BaseRun.Status.values:
            family.add_metric([kind_of(model), status], counts.get(status, 0))
    yield family


def runs_ended_recently() -> Iterator[Metric]:
    """Runs that ended in the last hour, by kind and final status: a failure
    rate needs no rate() over a figure that retries and deletions shrink."""
    family = GaugeMetricFamily(
        "imagineer_runs_ended_last_hour",
        "Runs that ended in the last hour, by kind and final status.",
        labels=["kind", "status"],
    )
    since = timezone.now() - RECENT
    for model in run_models():
        counts = dict(
            model.objects.filter(status__in=BaseRun.TERMINAL, finished_at__gte=since)
            .values_list("status")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for status in BaseRun.TERMINAL:
            family.add_metric([kind_of(model), status], counts.get(status, 0))
    yield family


def run_durations() -> Iterator[Metric]:
    """How long the runs that ended in the last day took (their last attempt:
    finished_at - started_at), by kind and final status: one aggregate query
    per kind.

    Read from the rows rather than observed at run end: a run ends in a worker
    process, often on another host, that serves no /metrics. A window, not a
    running total, because a retried or deleted run leaves the rows; so it is
    a gauge histogram (buckets, _gcount, _gsum), read without rate()."""
    family = GaugeHistogramMetricFamily(
        "imagineer_run_duration_seconds",
        "Duration of the runs that ended in the last 24 hours (last attempt), "
        "by kind and final status.",
        labels=["kind", "status"],
    )
    duration = ExpressionWrapper(
        F("finished_at") - F("started_at"), output_field=DurationField()
    )
    aggregates = {
        f"le{i}": Count("pk", filter=Q(duration__lte=timedelta(seconds=bound)))
        for i, bound in enumerate(DURATION_BUCKETS)
    }
    since = timezone.now() - DURATION_WINDOW
    for model in run_models():
        rows = (
            model.objects.filter(
                status__in=BaseRun.TERMINAL,
                started_at__isnull=False,
                finished_at__gte=since,
            )
            .annotate(duration=duration)
            .values("status")
            .annotate(count=Count("pk"), total=Sum("duration"), **aggregates)
            .order_by()
        )
        by_status = {row["status"]: row for row in rows}
        for status in BaseRun.TERMINAL:
            row = by_status.get(status, {})
            buckets = [
                (str(float(bound)), row.get(f"le{i}", 0))
                for i, bound in enumerate(DURATION_BUCKETS)
            ]
            buckets.append(("+Inf", row.get("count", 0)))
            family.add_metric(
                [kind_of(model), status], buckets, _seconds(row.get("total"))
            )
    yield family


def _seconds(value: timedelta | int | None) -> float:
    # SQLite may hand back a Sum of durations as microseconds.
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value / 1_000_000


# --- queues and workers ---------------------------------------------------------------


def cluster_names() -> list[str]:
    """The django-q2 clusters: the general one and the alternates (gpu)."""
    return [settings.Q_CLUSTER["name"], *settings.Q_CLUSTER.get("ALT_CLUSTERS", {})]


def queue_depth() -> Iterator[Metric]:
    """Tasks waiting for a worker, per cluster: OrmQ rows not taken by a
    worker, or the length of the cluster's Redis list (broker.queue_size)."""
    from django_q.brokers import get_broker

    depth = GaugeMetricFamily(
        "imagineer_queue_depth",
        "Tasks waiting in the broker for a worker, by cluster.",
        labels=["cluster"],
    )
    for name in cluster_names():
        depth.add_metric([name], get_broker(name).queue_size() or 0)
    yield depth


def workers_alive() -> Iterator[Metric]:
    from django_q.conf import Conf
    from django_q.status import Stat

    now = time.time()
    alive = [
        stat
        for stat in Stat.get_all()
        if stat.status in (Conf.IDLE, Conf.WORKING, Conf.STARTING)
        and now - stat.timestamp.timestamp() < WORKER_FRESH_SECONDS
    ]
    yield GaugeMetricFamily(
        "imagineer_worker_clusters_alive",
        "django-q2 cluster processes that reported in the last "
        f"{WORKER_FRESH_SECONDS}s (any host, any cluster).",
        value=len(alive),
    )


# --- disk -----------------------------------------------------------------------------


def disk_space() -> Iterator[Metric]:
    """Free and total bytes of the filesystem each local role writes to (a
    role on S3 or PostgreSQL has none here). Labelled by role, never path."""
    free = GaugeMetricFamily(
        "imagineer_disk_free_bytes",
        "Free bytes on the filesystem a role (media, training, models, "
        "database) writes to.",
        labels=["role"],
    )
    total = GaugeMetricFamily(
        "imagineer_disk_total_bytes",
        "Size in bytes of the filesystem a role writes to.",
        labels=["role"],
    )
    for fs in disk_filesystems(disk_places()):
        for role in fs.roles:
            free.add_metric([role], fs.free)
            total.add_metric([role], fs.total)
    yield free
    yield total


metrics_register("runs", runs_by_status)
metrics_register("runs_ended", runs_ended_recently)
metrics_register("run_durations", run_durations)
metrics_register("queue", queue_depth)
metrics_register("workers", workers_alive)
metrics_register("disk", disk_space)
