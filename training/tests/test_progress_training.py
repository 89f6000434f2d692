"""What a training run tells while it runs: one message per real stage, the
ETA gone once it has ended, and a cancel that lands inside a long phase."""

from __future__ import annotations

from typing import Any

import pytest

from imagineer_project.runs import run_execute, run_progress, run_request_cancel
from training.models import Lora, TrainingRun
from training.runs import training_run_execute
from training.tests.builders import QUIET, make_tiny_run

pytestmark = [pytest.mark.django_db, QUIET, pytest.mark.usefixtures("train_env")]


def execute(run: TrainingRun, watch: Any) -> TrainingRun:
    with run_progress(watch):
        run_execute(TrainingRun, run.pk, training_run_execute)
    run.refresh_from_db()
    return run


def test_a_run_says_each_stage_as_it_happens() -> None:
    said: list[str] = []
    run = execute(
        make_tiny_run(steps=4, checkpoint_every=2), lambda r: said.append(r.message)
    )

    assert run.status == "succeeded", run.error
    stages = [
        "Copying the dataset",
        "Checking the base model's files",
        "Loading the base model",
        "Encoding latents (0 of 6 images)",
        "Encoding latents (6 of 6 images)",
        "Adding the LoRA layers",
        "Step 1 of 4 under way",
        "Step 1 of 4, loss ",
        "Saving checkpoint at step 2",
        # Every checkpoint renders its samples (the run page's grid).
        "Rendering samples (1 of 3)",
        "Rendering samples (1 of 3), step 2 of 2",
        "Rendering samples (3 of 3), step 2 of 2",
        "Step 3 of 4, loss ",
        "Step 4 of 4, loss ",
        "Saving checkpoint at step 4",
        "Saving the LoRA",
        "Registering the LoRA and its samples",
    ]
    positions = [
        next(i for i, m in enumerate(said) if m.startswith(stage)) for stage in stages
    ]
    assert positions == sorted(positions), list(zip(stages, positions, strict=True))


@pytest.mark.parametrize(
    "phase",
    ["Loading the base model", "Encoding latents (0 of", "Rendering samples (1 of"],
)
def test_a_cancel_lands_inside_a_long_phase_not_after_it(phase: str) -> None:
    run = make_tiny_run(steps=4)
    said: list[str] = []

    def cancel_in_phase(seen: TrainingRun) -> None:
        said.append(seen.message)
        if seen.message.startswith(phase) and not seen.cancel_requested:
            run_request_cancel(TrainingRun.objects.get(pk=seen.pk))

    run = execute(run, cancel_in_phase)

    assert (run.status, run.message) == ("cancelled", "Cancelled")
    assert said[-1].startswith(phase)  # nothing happened after it
    assert not Lora.objects.exists()
    assert run.eta_seconds is None


def test_the_eta_shows_while_running_and_is_gone_once_ended(
    admin_client: Any,
) -> None:
    run = make_tiny_run()
    TrainingRun.objects.filter(pk=run.pk).update(
        status="running", eta_seconds=75, progress_done=2, progress_total=4
    )
    pages = (
        f"/training/runs/{run.pk}/",
        f"/admin/training/trainingrun/{run.pk}/change/",
    )
    for url in pages:
        assert "<dt>ETA</dt><dd>1m 15s</dd>" in admin_client.get(url).content.decode()

    run_request_cancel(run)
    for url in pages:
        html = admin_client.get(url).content.decode()
        assert "<strong>Cancelling…</strong>" in html, url

    for ended in ("cancelled", "failed", "succeeded"):
        TrainingRun.objects.filter(pk=run.pk).update(status=ended)
        for url in pages:
            html = admin_client.get(url).content.decode()
            assert "<dt>ETA</dt><dd>–</dd>" in html, (ended, url)
            assert "Cancelling…" not in html
