"""JSON API of a run's checkpoints (/api/training/runs/{id}/checkpoints): the
snapshot of every checkpoint (training.ml.snapshots) with its losses and
sample images, and "use step N", which registers that step's LoRA.

Staff only, as the runs themselves. Files are streamed by (run, step, index):
no response names a path on the worker's disk. Mounted beside training.api's
runs router (same prefix).
"""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, HttpRequest
from django.utils.text import slugify
from ninja import Router, Schema

from imagineer_project.errors import NotFound, get_or_404
from imagineer_project.permissions import staff_required
from training.models import TrainingRun
from training.registry import lora_register_checkpoint
from training.schemas import LoraOut
from training.selectors import checkpoint_sample_path, run_checkpoints, run_snapshot

router = Router(tags=["training"], auth=staff_required)


class CheckpointSampleOut(Schema):
    index: int
    prompt: str
    url: str


class CheckpointOut(Schema):
    step: int
    loss: float | None
    validation_loss: float | None
    # One per sample prompt, in prompt order; null where that image is missing.
    samples: list[CheckpointSampleOut | None]
    lora_id: int | None  # registered from this step, if it was
    lora_url: str  # this step's .safetensors, registered or not
    register_url: str


class CheckpointLoraOut(LoraOut):
    family: str
    source_step: int | None


def _run(run_id: int) -> TrainingRun:
    return get_or_404(TrainingRun.objects.defer("log_tail"), run_id, "Training run")


@router.get("/{int:run_id}/checkpoints", response=list[CheckpointOut])
def checkpoint_list(request: HttpRequest, run_id: int) -> Any:
    """Every checkpoint's step, losses and sample image URLs, oldest first;
    empty before the first checkpoint and once the run's work dir is gone."""
    _, rows = run_checkpoints(_run(run_id))
    return [
        {
            "step": row.step,
            "loss": row.loss,
            "validation_loss": row.validation_loss,
            "samples": row.samples,
            "lora_id": row.lora.pk if row.lora else None,
            "lora_url": row.lora_url,
            "register_url": row.register_url,
        }
        for row in rows
    ]


@router.post(
    "/{int:run_id}/checkpoints/{int:step}/register", response=CheckpointLoraOut
)
def checkpoint_register(request: HttpRequest, run_id: int, step: int) -> Any:
    """Register that step's LoRA ("use step N") and return it; asking again
    returns the same LoRA. 404 names the steps there are."""
    return lora_register_checkpoint(run=_run(run_id), step=step)


@router.get("/{int:run_id}/checkpoints/{int:step}/samples/{int:index}")
def checkpoint_sample(
    request: HttpRequest, run_id: int, step: int, index: int
) -> FileResponse:
    """The PNG of sample prompt `index` at `step`."""
    path = checkpoint_sample_path(_run(run_id), step, index)
    if path is None:
        raise NotFound(f"No sample {index} at step {step} of training run {run_id}.")
    return FileResponse(path.open("rb"), content_type="image/png")


@router.get("/{int:run_id}/checkpoints/{int:step}/lora")
def checkpoint_lora(request: HttpRequest, run_id: int, step: int) -> FileResponse:
    """That step's .safetensors (kohya format), registered or not."""
    run = _run(run_id)
    snapshot = run_snapshot(run, step)
    if snapshot is None or not snapshot.lora_path.is_file():
        raise NotFound(f"Training run {run_id} has no checkpoint at step {step}.")
    name = slugify(run.name) or f"run-{run.pk}"
    return FileResponse(
        snapshot.lora_path.open("rb"),
        as_attachment=True,
        filename=f"{name}-step-{step}.safetensors",
        content_type="application/octet-stream",
    )
