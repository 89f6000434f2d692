"""What a generation job tells while it runs: the stage, per-step progress
with an ETA, a rough preview every few steps (served by the API and shown on
its pages), and Cancel that asks first and then says "Cancelling…"."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from imagineer_project.runs import run_progress, run_request_cancel
from training.generation import runs as generation_runs
from training.generation.services import generation_job_create
from training.models import GenerationJob
from training.tests.builders import QUIET, run_job, small_request

pytestmark = [pytest.mark.django_db, QUIET, pytest.mark.usefixtures("fresh_cache")]


def create(**overrides: Any) -> GenerationJob:
    return generation_job_create(request=small_request(**overrides), enqueue=False)


def admin_url(job: GenerationJob) -> str:
    return f"/admin/training/generationjob/{job.pk}/change/"


def preview_url(job: GenerationJob) -> str:
    return f"/api/generation-jobs/{job.pk}/preview"


def test_a_job_reports_each_step_with_an_eta_and_serves_a_preview_while_it_runs(
    gen_env: Path, staff_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image as PILImage

    monkeypatch.setattr(generation_runs, "STOP_POLL_SECONDS", 0)  # every step told
    job = create(num_images=2, steps=6)
    seen: list[tuple[str, int, int]] = []
    answers: list[tuple[int, str, bytes]] = []

    def watch(run: Any) -> None:
        seen.append((run.message, run.progress_done, run.progress_total))
        if run.message.startswith("Image 2 of 2 · step 1 of 6") and not answers:
            got = staff_client.get(preview_url(job))  # the job is still running
            answers.append((got.status_code, got["Content-Type"], got.content))

    with run_progress(watch):
        job = run_job(job)

    assert job.status == "succeeded", job.error
    messages = [message for message, _, _ in seen]
    assert "Loading the base model" in messages or "Starting image 1 of 2" in messages
    assert "Image 1 of 2 · step 1 of 6" in messages  # no pace measured yet
    assert any(m.startswith("Image 1 of 2 · step 6 of 6 · about ") for m in messages)
    assert any(m.startswith("Image 2 of 2 · step 3 of 6 · about ") for m in messages)
    assert "1 of 2 image(s) made" in " ".join(messages)
    # Progress counts steps over both images, so the bar never stands still.
    steps = [(done, total) for _, done, total in seen if total == 12]
    assert [done for done, _ in steps] == sorted(done for done, _ in steps)
    assert {7, 9, 11} <= {done for done, _ in steps}
    assert (job.progress_done, job.progress_total, job.percent) == (12, 12, 100)

    [(status, content_type, data)] = answers
    assert (status, content_type) == (200, "image/webp")
    preview = PILImage.open(io.BytesIO(data))
    assert preview.format == "WEBP" and preview.size == (64, 64)
    after = staff_client.get(preview_url(job))
    assert after.status_code == 200 and after["Cache-Control"] == "no-store"


def test_the_preview_is_404_before_the_first_and_staff_only(
    gen_env: Path, staff_client: Any, client: Any
) -> None:
    job = create()
    body = staff_client.get(preview_url(job)).json()
    assert body["error"] == f"Generation job {job.pk} has no preview (yet)."
    assert staff_client.get("/api/generation-jobs/999999/preview").status_code == 404
    client.logout()
    assert client.get(preview_url(job)).status_code == 401


def test_latent_preview_is_small_and_keeps_the_aspect_ratio() -> None:
    import torch

    from training.ml.generate import latent_preview

    gray = latent_preview(torch.zeros(1, 4, 64, 128), 1024, 512)
    assert gray.size == (256, 128)
    assert gray.getcolors() == [(256 * 128, (127, 127, 127))]  # 0: the middle
    # The fourth latent channel leans blue-dark: negative in every colour.
    latents = torch.zeros(1, 4, 8, 8)
    latents[0, 3] = -1.0
    blueish = latent_preview(latents, 64, 64)
    red, green, blue = blueish.getpixel((4, 4))
    assert blue > green > red > 128 and blueish.size == (64, 64)


def test_the_job_page_shows_the_preview_asks_before_cancel_then_says_cancelling(
    gen_env: Path, admin_client: Any
) -> None:
    job = create()
    pages = (f"/generate/jobs/{job.pk}/", admin_url(job))
    GenerationJob.objects.filter(pk=job.pk).update(
        status="running", message="Image 1 of 1 · step 3 of 25 · about 40 s left"
    )
    for url in pages:
        html = admin_client.get(url).content.decode()
        assert f'data-refresh-src="{preview_url(job)}"' in html, url
        assert 'data-confirm="Cancel generation' in html, url
        assert "Cancelling…" not in html

    run_request_cancel(job)
    for url in pages:
        html = admin_client.get(url).content.decode()
        assert "Cancelling…" in html, url
        assert "data-confirm=" not in html, url

    GenerationJob.objects.filter(pk=job.pk).update(status="cancelled")
    html = admin_client.get(f"/generate/jobs/{job.pk}/").content.decode()
    assert "Cancelling…" not in html and "data-refresh-src" not in html
