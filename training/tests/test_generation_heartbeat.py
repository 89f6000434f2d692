"""A generation job keeps its heartbeat while the worker loads the base model:
a load slower than the stale limit is not taken for a dead worker."""

from __future__ import annotations

import time
from typing import Any

import pytest
from PIL import Image as PILImage

from imagineer_project.runs import reap_stale_runs
from training.generation.services import GenerationRequest, generation_job_create
from training.generation.tasks import run_generation
from training.ml import generate

pytestmark = pytest.mark.django_db(transaction=True)


class SlowHolder:
    """Stands in for the pipeline holder: loading it takes longer than the
    reaper's stale limit, and the reaper looks while it loads."""

    device = "cpu"

    def __init__(self, load_seconds: float) -> None:
        self.load_seconds = load_seconds
        self.reaped_during_load: dict[str, int] | None = None

    @property
    def pipe(self) -> Any:
        time.sleep(self.load_seconds)
        self.reaped_during_load = reap_stale_runs()
        return object()


def test_a_model_load_slower_than_the_stale_limit_is_not_reaped(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.RUN_STALE_AFTER_SECONDS = 1
    settings.RUN_HEARTBEAT_SECONDS = 0.1
    settings.GENERATION_BASE_MODEL = "some/model"
    holder = SlowHolder(load_seconds=1.8)

    def fake_generate(holder: Any, spec: Any, *, on_image: Any, should_stop: Any):
        for offset in range(spec.num_images):
            on_image(offset, PILImage.new("RGB", (64, 64), (offset * 40, 0, 0)))

    monkeypatch.setattr(generate, "holder_for", lambda *a, **k: holder)
    monkeypatch.setattr(generate, "generate_images", fake_generate)
    monkeypatch.setattr(generate, "prompt_overflow", lambda holder, prompt: 0)
    job = generation_job_create(
        request=GenerationRequest(prompt="a cat", width=64, height=64, num_images=2),
        enqueue=False,
    )

    assert run_generation(job.pk) == "succeeded"
    assert holder.reaped_during_load == {"requeued": 0, "cancelled": 0, "failed": 0}
    job.refresh_from_db()
    assert (job.status, job.attempts, len(job.image_ids)) == ("succeeded", 1, 2)
