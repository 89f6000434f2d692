"""Admin for generation jobs: "Add" is the generate form; a job's page shows its
progress, the images as they arrive, and a Cancel button while it runs.

training/admin.py registers it.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from albums.admin import thumbnail_tag
from imagineer_project.errors import DomainError
from imagineer_project.forms import add_domain_error
from imagineer_project.run_admin import RunAdmin
from training.generation.forms import GenerateForm
from training.generation.selectors import generation_job_images, image_recipe
from training.generation.services import (
    effective_prompt,
    generation_job_create,
)
from training.models import GenerationJob


class GenerationJobAdmin(RunAdmin):
    progress_unit = " steps"
    cancel_label = "Cancel job"
    cancel_note = "Cancel requested; it stops within a step, and keeps its images."
    list_display = (
        "id",
        "thumbnail",
        "excerpt",
        "status",
        "progress",
        "lora_stack",
        "seed",
        "album",
        "created_by",
        "created",
    )
    list_filter = ("status", "scheduler", "insert_trigger_words")
    search_fields = ("prompt", "negative_prompt", "message", "error")
    list_select_related = ("album", "created_by")
    raw_id_fields = ("album", "created_by")
    fieldsets = (
        (None, {"fields": ("status", "progress_bar", "message", "error", "results")}),
        (
            "Request",
            {
                "fields": (
                    "final_prompt",
                    "prompt",
                    "negative_prompt",
                    "lora_stack",
                    "insert_trigger_words",
                    "seed",
                    "steps",
                    "guidance",
                    "scheduler",
                    "size",
                    "num_images",
                    "base_model",
                    "album",
                    "again",
                )
            },
        ),
        (
            "Run",
            {
                "fields": (
                    "created_by",
                    "created",
                    "started_at",
                    "finished_at",
                    "attempts",
                )
            },
        ),
    )
    change_form_template = "admin/training/generationjob/change_form.html"

    # --- the generate form in place of the add form ---------------------------------

    def add_page(self, request: HttpRequest) -> HttpResponse:
        """Generate from a prompt instead of typing in a job's fields."""
        initial = GenerateForm.initial_from_query(request.GET)
        return self.form_view(
            request,
            self.posted(request, GenerateForm, **initial),
            save=lambda form: self._create(request, form),
            title="Generate",
            template="admin/training/generationjob/generate.html",
        )

    def _create(self, request: HttpRequest, form: GenerateForm) -> HttpResponse | None:
        try:
            job = generation_job_create(
                request=form.to_request(), created_by=request.user, rate_limited=True
            )
        except DomainError as exc:
            add_domain_error(form, exc)
            return None
        self.message_user(request, f"Generation #{job.pk} queued.", messages.SUCCESS)
        return HttpResponseRedirect(self.run_url(job))

    # --- columns and fields ---------------------------------------------------------

    @admin.display(description="")
    def thumbnail(self, obj: GenerationJob) -> str:
        # The first image's id is on the row: no query per job.
        if not obj.image_ids:
            return ""
        return thumbnail_tag(obj.image_ids[0], px=48)

    @admin.display(description="prompt", ordering="prompt")
    def excerpt(self, obj: GenerationJob) -> str:
        return truncatechars(obj.prompt, 80)

    @admin.display(description="LoRAs")
    def lora_stack(self, obj: GenerationJob) -> str:
        return ", ".join(f"{e['name']} {e['weight']:g}" for e in obj.loras) or "—"

    @admin.display(description="prompt used")
    def final_prompt(self, obj: GenerationJob) -> str:
        return effective_prompt(obj)

    @admin.display(description="size")
    def size(self, obj: GenerationJob) -> str:
        return f"{obj.width}×{obj.height} px"

    @admin.display(description="images")
    def results(self, obj: GenerationJob) -> str:
        images = generation_job_images(obj)
        if not images:
            return "—"
        return format_html_join(
            " ",
            '<a href="{}"><img src="{}?size=256" width="128" height="128" alt="" '
            'class="imagineer-thumb" title="seed {}"></a>',
            (
                (
                    image.get_absolute_url(),
                    image.thumbnail_url,
                    (image_recipe(image) or {}).get("seed", ""),
                )
                for image in images
            ),
        )

    @admin.display(description="generate again")
    def again(self, obj: GenerationJob) -> str:
        query = urlencode(
            {
                "prompt": obj.prompt,
                "negative_prompt": obj.negative_prompt,
                "loras": "\n".join(f"{e['name']}:{e['weight']:g}" for e in obj.loras),
                "insert_trigger_words": "1" if obj.insert_trigger_words else "0",
                "seed": obj.seed,
                "steps": obj.steps,
                "guidance": obj.guidance,
                "scheduler": obj.scheduler,
                "width": obj.width,
                "height": obj.height,
                "num_images": obj.num_images,
                "album": obj.album.name if obj.album else "",
                "base_model": obj.base_model,
            }
        )
        url = reverse("admin:training_generationjob_add")
        return format_html(
            '<a href="{}?{}">The same request, as a new job</a>', url, query
        )
