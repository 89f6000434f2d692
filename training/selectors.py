"""Reads for training runs."""

from __future__ import annotations

import math

from django.db.models import OuterRef, QuerySet, Subquery

from training.models import Lora, TrainingRun


def training_runs() -> QuerySet[TrainingRun]:
    """Runs with their dataset (without its manifest, which lists every image)
    and the id of the LoRA each registered: one query for a list."""
    lora = Lora.objects.filter(source_run=OuterRef("pk")).values("pk")[:1]
    return (
        TrainingRun.objects.select_related("dataset")
        .defer("dataset__manifest")
        .annotate(lora_id=Subquery(lora))
    )


# A run's bulky columns, left out of lists.
RUN_DETAIL_FIELDS = ("config", "manifest", "loss_curve", "log_tail")


def training_run_log_lines(run: TrainingRun) -> list[str]:
    return run.log_tail.splitlines()


def loss_text(run: TrainingRun) -> str:
    """The latest loss beside a progress bar ("" before the first step)."""
    loss = run.loss
    return f"loss {loss:.4f}" if loss is not None and math.isfinite(loss) else ""
