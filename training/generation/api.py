"""JSON API for generation: POST /api/generate (202 + Location), and
/api/generation-jobs to list, watch, cancel and retry jobs and see a running
job's preview. Staff only: a job spends GPU time and writes images into albums.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Router

from imagineer_project.errors import NotFound, error_responses
from imagineer_project.permissions import staff_required
from imagineer_project.run_api import RunRoutes, add_run_routes
from training.generation.schemas import (
    GenerateIn,
    GenerationJobDetailOut,
    GenerationJobOut,
)
from training.generation.selectors import generation_job_preview
from training.generation.services import GenerationRequest, generation_job_create
from training.models import GenerationJob

generate_router = Router(tags=["generation"], auth=staff_required)
jobs_router = Router(tags=["generation"], auth=staff_required)


def _request(payload: GenerateIn) -> GenerationRequest:
    data = payload.dict()
    loras = []
    for choice in data.pop("loras"):
        ref = choice["id"] if choice["id"] is not None else (choice["name"] or "")
        loras.append((ref, choice["weight"]))
    return GenerationRequest(**data, loras=tuple(loras))


JOBS = RunRoutes(
    model=GenerationJob,
    what="Generation job",
    location="/api/generation-jobs",
    list_out=GenerationJobOut,
    detail_out=GenerationJobDetailOut,
    detail=lambda: GenerationJob.objects.select_related("album"),
    cancel_doc="Stop a job: at once if queued, within a denoising step if "
    "running; the images made so far stay. 409 once it has ended.",
    retry_doc="Queue a failed or cancelled job again; it renders only the images "
    "it had not made yet.",
)


@generate_router.post("", response={202: GenerationJobDetailOut})
@error_responses(429)
def generate(request: HttpRequest, response: HttpResponse, payload: GenerateIn) -> Any:
    """Queue text-to-image with any stack of registered LoRAs; poll the job at
    the Location header. 422 names every bad field; 429 (with Retry-After) when
    the caller made too many requests lately."""
    job = generation_job_create(
        request=_request(payload), created_by=request.user, rate_limited=True
    )
    return JOBS.accepted(response, job)


@jobs_router.get("/{int:job_id}/preview")
def job_preview(request: HttpRequest, job_id: int) -> HttpResponse:
    """A rough, small WEBP of the image the job is making, renewed every few
    denoising steps (from the latents, without the VAE). 404 before the first
    one and an hour after the last."""
    preview = generation_job_preview(JOBS.get(job_id))
    if preview is None:
        raise NotFound(f"Generation job {job_id} has no preview (yet).")
    response = HttpResponse(preview, content_type="image/webp")
    response["Cache-Control"] = "no-store"  # a new one every few steps
    return response


add_run_routes(jobs_router, JOBS)
