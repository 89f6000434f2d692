"""Training runs end to end on the tiny real pipeline: resume after a dead
worker, one LoRA however often the task comes, cancel, divergence, bad input."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from albums.models import Visibility
from imagineer_project.runs import (
    reap_stale_runs,
    run_claim,
    run_execute,
    run_request_cancel,
)
from training.ml.kohya import kohya_key_problems, read_lora_metadata
from training.models import Lora, TrainingRun
from training.registry import lora_register_from_run
from training.runs import manifest_sha256, run_work_dir, training_run_execute
from training.tasks import run_training
from training.tests.builders import (
    make_tiny_run,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("train_env")]


class Crash(Exception):
    """Stands in for the worker process dying mid-run."""


def crash_at(step: int) -> Any:
    def on_step(report: Any) -> None:
        if report.step == step:
            raise Crash(f"killed at step {step}")

    return on_step


def render_with_lora(base: Path, lora_file: str | None) -> Any:
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        base, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    if lora_file:
        pipe.load_lora_weights(lora_file)
    image = pipe(
        "zxq",
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(3),
    ).images[0]
    return np.asarray(image, dtype=np.int16)


def test_a_run_killed_mid_training_resumes_from_its_checkpoint_and_registers_once(
    tiny_base: Path, django_capture_on_commit_callbacks: Any
) -> None:
    run = make_tiny_run(steps=4, checkpoint_every=2, learning_rate=1e-2)
    # Attempt 1 dies at step 3: the row stays "running", as after a kill -9.
    claimed = run_claim(TrainingRun, run.pk)
    with pytest.raises(Crash):
        training_run_execute(claimed, on_step=crash_at(3))
    run.refresh_from_db()
    assert (run.status, run.last_checkpoint_step, run.attempts) == ("running", 2, 1)

    # Its heartbeat goes stale; the reaper queues it again and (sync mode)
    # the worker runs the next attempt, which resumes at step 2.
    stale = timezone.now() - timedelta(hours=1)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=stale)
    with django_capture_on_commit_callbacks(execute=True):
        assert reap_stale_runs() == {"requeued": 1, "cancelled": 0, "failed": 0}
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.attempts == 2
    assert run.message.startswith("Trained 4 steps (final loss ")
    assert "resumed from step 2" in run.message
    assert (run.progress_done, run.progress_total) == (4, 4)
    assert [p[0] for p in run.loss_curve] == [1, 2, 3, 4]
    assert all(math.isfinite(p[1]) for p in run.loss_curve)
    assert math.isfinite(run.loss) and run.learning_rate == 1e-2
    assert run.last_checkpoint_step == 4
    assert "Resumed from checkpoint at step 2" in run.log_tail
    assert "Attempt 2" in run.log_tail

    # The manifest reproduces the run.
    manifest = run.manifest
    assert run.manifest_sha256 == manifest_sha256(manifest)
    assert manifest["dataset"]["manifest_sha256"] == run.dataset.manifest_sha256
    # Named, not located: the hash says exactly which model it was.
    assert manifest["base_model"]["id"] == tiny_base.name
    assert len(manifest["base_model"]["sha256"]) == 64
    assert manifest["config"] == run.config
    assert manifest["seed"] == 0 and manifest["device"] == "cpu"
    assert {"torch", "diffusers", "peft"} <= set(manifest["libraries"])
    assert manifest["sample_prompts"] == [
        "zxq",
        "zxq, a blocky picture number 0",
        "zxq, a blocky picture number 1",
    ]

    # Samples: private images in an album linked to the run and its LoRA.
    album = run.sample_album
    assert album is not None and album.visibility == Visibility.PRIVATE
    samples = list(album.images.all())
    assert len(samples) == 3
    assert {(im.source_kind, im.visibility, im.width) for im in samples} == {
        ("generated", "private", 64)
    }

    # The LoRA: registered once, stored by content, valid kohya keys, and it
    # changes what a fresh pipeline renders.
    lora = Lora.objects.get(source_run=run)
    assert lora.name == "blocks"
    assert lora.file.name == f"loras/{lora.sha256}.safetensors"
    assert (lora.trigger_words, lora.rank, lora.alpha) == (["zxq"], 4, 4.0)
    assert lora.sample_album == album
    path = default_storage.path(lora.file.name)
    assert Path(path).stat().st_size == lora.size
    assert kohya_key_problems(path) == []
    assert read_lora_metadata(path)["dataset_hash"] == run.dataset.manifest_sha256
    with_lora = render_with_lora(tiny_base, path)
    assert (with_lora != render_with_lora(tiny_base, None)).any()

    # Delivered again: nothing to claim, nothing duplicated.
    assert run_training(run.pk) is None
    again = lora_register_from_run(run=run, lora_path=Path(path))
    assert again.pk == lora.pk
    assert Lora.objects.count() == 1
    assert album.images.count() == 3
    assert not (run_work_dir(run) / "data").exists()  # the dataset copy is gone


def test_cancel_stops_the_run_within_one_step() -> None:
    run = make_tiny_run(steps=8, checkpoint_every=0, sample_steps=1)

    def cancel_at_two(report: Any) -> None:
        if report.step == 2:
            assert run_request_cancel(TrainingRun.objects.get(pk=run.pk))

    run_execute(
        TrainingRun, run.pk, lambda r: training_run_execute(r, on_step=cancel_at_two)
    )
    run.refresh_from_db()
    assert (run.status, run.progress_done, run.message) == ("cancelled", 2, "Cancelled")
    assert run.log_tail.splitlines()[-1].endswith("Cancelled at step 2")
    assert not Lora.objects.exists()
    assert not run_request_cancel(run)  # already ended


def test_a_diverging_run_fails_with_advice_and_is_never_retried(settings: Any) -> None:
    settings.TRAINING_RANGES = {**settings.TRAINING_RANGES, "learning_rate": (0, 1e7)}
    run = make_tiny_run(steps=10, learning_rate=1e6, checkpoint_every=0)
    assert run_training(run.pk) == "failed"
    run.refresh_from_db()
    assert run.error.startswith("NonFiniteLoss: The loss became nan at step ")
    assert "lower the learning rate" in run.error
    assert "Failed: NonFiniteLoss" in run.log_tail
    # Failed is final: the reaper leaves it and a second delivery finds nothing.
    stale = timezone.now() - timedelta(hours=1)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=stale)
    assert reap_stale_runs() == {"requeued": 0, "cancelled": 0, "failed": 0}
    assert run_training(run.pk) is None
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("failed", 1)
    assert not Lora.objects.exists()


def test_a_missing_base_model_fails_the_run_saying_so(tmp_path: Path) -> None:
    run = make_tiny_run()
    TrainingRun.objects.filter(pk=run.pk).update(base_model=str(tmp_path / "nope"))
    assert run_training(run.pk) == "failed"
    run.refresh_from_db()
    # Named as the run names the model everywhere: no path reaches a caller.
    assert run.error == "InvalidTrainingInput: Base model folder 'nope' does not exist."
    assert str(tmp_path) not in run.log_tail
    assert run.manifest["base_model"] == {"id": "nope", "sha256": ""}


def test_a_dataset_file_missing_from_storage_fails_the_run() -> None:
    run = make_tiny_run()
    item = run.dataset.manifest["items"][0]
    default_storage.delete(item["file"])
    assert run_training(run.pk) == "failed"
    run.refresh_from_db()
    assert run.error.startswith("DatasetFileMissing: The file of image ")
