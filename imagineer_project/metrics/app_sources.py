"""Scrape-time sources about the apps' own data: images, labeling spend,
training speed.

imagineer_project sits below the apps and never imports them (DESIGN.md,
Layers), so the models are looked up by label through the app registry, and
a source whose app is not installed yields nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db.models import Count, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from imagineer_project.metrics.collectors import metrics_register


def _model(label: str) -> Any:
    app_label, _, name = label.partition(".")
    if not apps.is_installed(app_label):
        return None
    return apps.get_model(app_label, name)


def images_by_source() -> Iterator[Metric]:
    image = _model("albums.Image")
    if image is None:
        return
    family = GaugeMetricFamily(
        "imagineer_images",
        "Stored images by how they came in (upload, scrape, generated, ...).",
        labels=["source_kind"],
    )
    counts = dict(
        image.objects.values_list("source_kind").annotate(n=Count("pk")).order_by()
    )
    kinds = [value for value, _ in image._meta.get_field("source_kind").choices]
    for kind in dict.fromkeys([*kinds, *counts]):
        family.add_metric([kind], counts.get(kind, 0))
    yield family


def labeling_spend() -> Iterator[Metric]:
    """The tokens and estimated cost every labeling job has recorded, by
    model: the jobs' stored totals, so a job labelled on any worker counts."""
    job = _model("labeling.LabelingJob")
    if job is None:
        return
    tokens = CounterMetricFamily(
        "imagineer_labeling_tokens",
        "Tokens sent to and received from the labeling model, by model.",
        labels=["model", "direction"],
    )
    cost = CounterMetricFamily(
        "imagineer_labeling_cost_usd",
        "Estimated cost of labeling in US dollars, by model.",
        labels=["model"],
    )
    rows = (
        job.objects.values("model_name")
        .annotate(i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost_usd"))
        .order_by("model_name")
    )
    for row in rows:
        model = row["model_name"]
        tokens.add_metric([model, "input"], row["i"] or 0)
        tokens.add_metric([model, "output"], row["o"] or 0)
        cost.add_metric([model], float(row["c"] or 0))
    yield tokens
    yield cost


def training_speed() -> Iterator[Metric]:
    """Optimizer steps per second of the training runs now running (their
    sum: one per gpu worker), from the trainer's last step report."""
    run_model = _model("training.TrainingRun")
    if run_model is None:
        return
    fresh = timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS)
    running = run_model.objects.filter(status="running", heartbeat_at__gte=fresh)
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


def steps_per_second(run: Any) -> float:
    """The trainer reports images/s over this attempt's steps; one step is
    batch_size x gradient_accumulation images (training/ml/trainer.py)."""
    config = run.config or {}
    per_step = int(config.get("batch_size") or 1) * int(
        config.get("gradient_accumulation") or 1
    )
    return float(run.images_per_second or 0) / max(per_step, 1)


metrics_register("images", images_by_source)
metrics_register("labeling", labeling_spend)
metrics_register("training", training_speed)
