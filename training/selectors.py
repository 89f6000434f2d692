"""Reads for training runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from django.db.models import F, OuterRef, QuerySet, Subquery

from training.ml.snapshots import Snapshot, list_snapshots
from training.models import Lora, TrainingRun


def training_runs() -> QuerySet[TrainingRun]:
    """Runs with their dataset (without its manifest, which lists every image)
    and the id of the LoRA each registered: one query for a list."""
    # The latest step's LoRA: a run may register one per checkpoint.
    lora = (
        Lora.objects.filter(source_run=OuterRef("pk"))
        .order_by(F("source_step").desc(nulls_last=True), "-id")
        .values("pk")[:1]
    )
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


# --- checkpoints people choose between ----------------------------------------------


@dataclass(frozen=True)
class CheckpointSample:
    index: int
    prompt: str
    url: str  # streamed by the API: never a path on the worker's disk


@dataclass(frozen=True)
class Checkpoint:
    """One step's snapshot (training.ml.snapshots): its losses, a sample per
    prompt (None where that prompt's image is missing) and the LoRA
    registered from it, if any."""

    step: int
    loss: float | None
    validation_loss: float | None
    samples: list[CheckpointSample | None]
    lora: Lora | None
    lora_url: str
    register_url: str


def run_snapshots(run: TrainingRun) -> list[Snapshot]:
    """The run's finished snapshots, oldest first; none once its work dir
    was deleted."""
    from training.runs import run_work_dir

    return list_snapshots(run_work_dir(run) / "out")


def run_snapshot(run: TrainingRun, step: int) -> Snapshot | None:
    return next((s for s in run_snapshots(run) if s.step == step), None)


def run_lora(run: TrainingRun) -> Lora | None:
    """The LoRA a run stands for: its latest step's registered one (the final
    LoRA once the run finished)."""
    return (
        Lora.objects.filter(source_run=run)
        .order_by(F("source_step").desc(nulls_last=True), "-id")
        .first()
    )


def checkpoint_sample_url(run_id: int, step: int, index: int) -> str:
    return f"/api/training/runs/{run_id}/checkpoints/{step}/samples/{index}"


def run_checkpoints(run: TrainingRun) -> tuple[list[str], list[Checkpoint]]:
    """The sample prompts (the grid's columns) and the checkpoints (its rows,
    oldest step first), each with the LoRA registered from it."""
    snapshots = run_snapshots(run)
    prompts = _prompts(run, snapshots)
    registered = {
        lora.source_step: lora
        for lora in Lora.objects.filter(
            source_run=run, source_step__in=[s.step for s in snapshots]
        ).only("name", "source_step", "family", "sha256")
    }
    base = f"/api/training/runs/{run.pk}/checkpoints"
    rows = []
    for snapshot in snapshots:
        images = {_sample_index(p): p for p in snapshot.sample_paths}
        samples = [
            CheckpointSample(i, prompt, checkpoint_sample_url(run.pk, snapshot.step, i))
            if i in images
            else None
            for i, prompt in enumerate(prompts)
        ]
        rows.append(
            Checkpoint(
                step=snapshot.step,
                loss=snapshot.loss,
                validation_loss=snapshot.validation_loss,
                samples=samples,
                lora=registered.get(snapshot.step),
                lora_url=f"{base}/{snapshot.step}/lora",
                register_url=f"{base}/{snapshot.step}/register",
            )
        )
    return prompts, rows


def checkpoint_sample_path(run: TrainingRun, step: int, index: int) -> Path | None:
    """The PNG of prompt `index` at `step`, None when there is none."""
    snapshot = run_snapshot(run, step)
    if snapshot is None or index < 0:
        return None
    return next((p for p in snapshot.sample_paths if _sample_index(p) == index), None)


def _prompts(run: TrainingRun, snapshots: list[Snapshot]) -> list[str]:
    """The prompts as the newest snapshot recorded them (the run's manifest
    before any), padded to cover every sample image a snapshot holds."""
    recorded = snapshots[-1].info.get("prompts") if snapshots else None
    prompts = [str(p) for p in (recorded or run.manifest.get("sample_prompts", []))]
    count = max(
        (_sample_index(p) + 1 for s in snapshots for p in s.sample_paths), default=0
    )
    return prompts + [""] * (count - len(prompts))


def _sample_index(path: Path) -> int:
    """sample-03.png -> 3 (-1 for a name the trainer does not write)."""
    number = path.stem.rsplit("-", 1)[-1]
    return int(number) if number.isdigit() else -1
