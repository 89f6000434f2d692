"""JSON API for generation: POST /api/generate (202 + Location), and
/api/generation-jobs to list, watch and cancel jobs. Staff only: a job spends
GPU time and writes images into albums.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status

from imagineer_project.errors import ApiError, error_response, get_or_404
from imagineer_project.pagination import PageIn, PageOut, keyset_paginate
from imagineer_project.permissions import staff_required
from training.generation.schemas import (
    GenerateIn,
    GenerationJobDetailOut,
    GenerationJobFilterIn,
    GenerationJobOut,
)
from training.generation.services import (
    GenerationInvalid,
    GenerationRateLimited,
    GenerationRequest,
    generation_job_cancel,
    generation_job_create,
)
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


@generate_router.post("", response={202: GenerationJobDetailOut})
def generate(request: HttpRequest, response: HttpResponse, payload: GenerateIn) -> Any:
    """Queue text-to-image with any stack of registered LoRAs; poll the job at
    the Location header. 422 names every bad field; 429 (with Retry-After) when
    the caller made too many requests lately."""
    try:
        job = generation_job_create(
            request=_request(payload), created_by=request.user, rate_limited=True
        )
    except GenerationInvalid as exc:
        raise ApiError(
            422, str(exc), code="generation_invalid", details={"errors": exc.errors}
        ) from exc
    except GenerationRateLimited as exc:
        # Returned, not raised: the error shape plus the Retry-After header.
        limited = error_response(
            request, 429, str(exc), details={"retry_after": exc.retry_after}
        )
        limited["Retry-After"] = str(exc.retry_after)
        return limited
    response["Location"] = f"/api/generation-jobs/{job.pk}"
    return Status(202, job)


def _job(job_id: int) -> GenerationJob:
    jobs = GenerationJob.objects.select_related("album")
    return get_or_404(jobs, job_id, "Generation job")


@jobs_router.get("", response=PageOut[GenerationJobOut])
def generation_job_list(
    request: HttpRequest, filters: Query[GenerationJobFilterIn], page: Query[PageIn]
) -> Any:
    """Generation jobs, newest first."""
    jobs = GenerationJob.objects.select_related("album")
    if filters.status:
        jobs = jobs.filter(status=filters.status)
    return keyset_paginate(jobs, keys=["-id"], page=page)


@jobs_router.get("/{int:job_id}", response=GenerationJobDetailOut)
def generation_job_detail(request: HttpRequest, job_id: int) -> Any:
    """Progress, and each image made so far with its recipe."""
    return _job(job_id)


@jobs_router.post("/{int:job_id}/cancel", response=GenerationJobDetailOut)
def generation_job_cancel_view(request: HttpRequest, job_id: int) -> Any:
    """Stop a job: at once if queued, within a denoising step if running; the
    images made so far stay. 409 once it has ended."""
    job = _job(job_id)
    if not generation_job_cancel(job=job):
        raise ApiError(409, f"Generation job {job_id} already ended ({job.status}).")
    return job
