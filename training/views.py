"""The staff page of a training run (/training/runs/<id>/): progress, the loss
curve as an inline SVG, samples, the log tail and the manifest. It refreshes
itself while the run is active. The admin's run page shows the same report."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from training.models import TrainingRun
from training.paths import base_model_name
from training.registry import CheckpointMissing, lora_register_checkpoint
from training.selectors import (
    run_checkpoints,
    run_lora,
    training_run_log_lines,
    training_runs,
)
from training.services import training_run_can_start

CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 640, 220, 28
REFRESH_SECONDS = 5


def loss_chart(curve: list[list[float]], total_steps: int) -> dict[str, Any] | None:
    """Geometry of the loss curve for an SVG polyline (None before the first step).

    x runs over the whole run (0 to total steps), so the line grows as the
    run goes; y spans the lowest to the highest loss seen.
    """
    if not curve:
        return None
    steps, losses = [p[0] for p in curve], [p[1] for p in curve]
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0
    last_step = max(total_steps, steps[-1], 1)
    width, height = CHART_WIDTH - 2 * CHART_PAD, CHART_HEIGHT - 2 * CHART_PAD

    def point(step: float, loss: float) -> str:
        x = CHART_PAD + width * step / last_step
        y = CHART_PAD + height * (high - loss) / span
        return f"{x:.1f},{y:.1f}"

    return {
        "points": " ".join(point(s, v) for s, v in zip(steps, losses, strict=True)),
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "pad": CHART_PAD,
        "right": CHART_WIDTH - CHART_PAD,
        "bottom": CHART_HEIGHT - CHART_PAD,
        "low": low,
        "high": high,
        "first": losses[0],
        "last": losses[-1],
        "step": steps[-1],
        "total": last_step,
    }


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def run_report(run: TrainingRun) -> dict[str, Any]:
    """What the run page and the admin's run page show."""
    prompts = run.manifest.get("sample_prompts", [])
    samples = []
    if run.sample_album_id:
        ids = run.sample_album.memberships.order_by("position", "id").values_list(
            "image_id", flat=True
        )
        samples = [
            {"image_id": pk, "prompt": prompts[i] if i < len(prompts) else ""}
            for i, pk in enumerate(ids)
        ]
    prompts, checkpoints = run_checkpoints(run)
    return {
        "run": run,
        "base_model": base_model_name(run.base_model),  # a name, never a path
        "chart": loss_chart(run.loss_curve, run.progress_total),
        "eta": duration(run.eta_seconds),
        "log_lines": training_run_log_lines(run),
        "samples": samples,
        "lora": run_lora(run),
        "checkpoint_prompts": prompts,
        "checkpoints": checkpoints,
        "config_json": json.dumps(run.config, indent=2, sort_keys=True),
        "manifest_json": json.dumps(run.manifest, indent=2, sort_keys=True),
        "can_start": training_run_can_start(run),
        "refresh_seconds": REFRESH_SECONDS if run.is_active else None,
    }


@staff_member_required
def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    runs = training_runs().select_related("sample_album")
    run = get_object_or_404(runs, pk=run_id)
    return render(request, "training/run.html", run_report(run))


@staff_member_required
@require_POST
def checkpoint_use(request: HttpRequest, run_id: int, step: int) -> HttpResponse:
    """ "Use step N" on the run pages: register that step's LoRA (once; a second
    click finds it) and land on it in the admin."""
    run = get_object_or_404(TrainingRun.objects.defer("log_tail"), pk=run_id)
    try:
        lora = lora_register_checkpoint(run=run, step=step)
    except CheckpointMissing as exc:
        # The admin's run page shows messages; the staff run page has none.
        messages.warning(request, exc.message)
        return HttpResponseRedirect(run.get_absolute_url())
    messages.success(
        request, f"Step {step} of run #{run.pk} is the LoRA {lora.name!r}."
    )
    return HttpResponseRedirect(reverse("admin:training_lora_change", args=[lora.pk]))
