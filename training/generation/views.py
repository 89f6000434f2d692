"""Staff pages for generation: the form (/generate/, which a generated image's
page can pre-fill with its recipe) and a job's page (/generate/jobs/<id>/), with
progress and the images as they arrive. The page refreshes itself while the
job is active."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from imagineer_project.errors import DomainError
from imagineer_project.forms import add_domain_error
from imagineer_project.runs import run_request_cancel
from training.generation.forms import GenerateForm, lora_choices
from training.generation.selectors import generation_job_images
from training.generation.services import (
    effective_prompt,
    generation_job_create,
)
from training.models import GenerationJob

REFRESH_SECONDS = 3
RECENT_JOBS = 10


@staff_member_required
def generate_page(request: HttpRequest) -> HttpResponse:
    status, headers = 200, {}
    if request.method == "POST":
        form = GenerateForm(request.POST)
        status = 422  # unless a job is made (a redirect), or the error says
        if form.is_valid():
            try:
                job = generation_job_create(
                    request=form.to_request(),
                    created_by=request.user,
                    rate_limited=True,
                )
            except DomainError as exc:
                add_domain_error(form, exc)
                status, headers = exc.status, exc.headers()
            else:
                return redirect("generate-job-page", job_id=job.pk)
    else:
        form = GenerateForm(initial=GenerateForm.initial_from_query(request.GET))
    response = render(request, "training/generate.html", _context(form), status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def _context(form: GenerateForm) -> dict[str, Any]:
    recent = GenerationJob.objects.select_related("album").order_by("-id")
    return {"form": form, "loras": lora_choices(), "recent": recent[:RECENT_JOBS]}


@staff_member_required
def generation_job_page(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(GenerationJob.objects.select_related("album"), pk=job_id)
    context = {
        "job": job,
        "effective_prompt": effective_prompt(job),
        "images": generation_job_images(job),
        "refresh_seconds": REFRESH_SECONDS if job.is_active else None,
    }
    return render(request, "training/generate_job.html", context)


@staff_member_required
@require_POST
def generation_job_cancel_page(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(GenerationJob, pk=job_id)
    run_request_cancel(job)  # an ended job stays as it was
    return redirect("generate-job-page", job_id=job.pk)
