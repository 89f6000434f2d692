"""What training adds to GET /metrics (imagineer_project.metrics): the speed
of the runs now training, read at scrape time. Registered from
TrainingConfig.ready()."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from imagineer_project.metrics.collectors import metrics_register
from training.models import TrainingRun


def training_speed() -> Iterator[Metric]:
    """Optimizer steps per second of the training runs now running (their
    sum: one per gpu worker), from the trainer's last step report."""
    fresh = timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS)
    running = TrainingRun.objects.filter(status="running", heartbeat_at__gte=fresh)
    speeds = [steps_per_second(run) for run in running]
    yield GaugeMetricFamily(
        "imagineer_training_active_runs",
        "Training runs now running with a live worker.",
        value=len(speeds),
    )
    yield GaugeMetricFamily(
        "imagineer_training_steps_per_second",
        "Optimizer steps per second of the running training runs (0 when none).",
        value=sum(speeds),
    )


def steps_per_second(run: TrainingRun) -> float:
    """The trainer reports images/s over this attempt's steps; one step is
    batch_size x gradient_accumulation images (training/ml/trainer.py)."""
    config = run.config or {}
    per_step = int(config.get("batch_size") or 1) * int(
        config.get("gradient_accumulation") or 1
    )
    return float(run.images_per_second or 0) / max(per_step, 1)


metrics_register("training", training_speed)
