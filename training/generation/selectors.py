"""Reads for generation: a job's images and a generated image's recipe, as a
viewer may see it."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any
from urllib.parse import urlencode

from albums.models import Image
from training.models import GenerationJob
from training.paths import base_model_name


def generation_job_images(job: GenerationJob) -> list[Image]:
    """The job's images in seed order, each with its recipe (one query)."""
    found = Image.objects.select_related("recipe").in_bulk(job.image_ids)
    return [found[pk] for pk in job.image_ids if pk in found]


def image_recipe(image: Image) -> dict[str, Any] | None:
    recipe = getattr(image, "recipe", None)  # None when the image has none
    return recipe.recipe if recipe is not None else None


def recipe_for_viewer(recipe: dict[str, Any], *, staff: bool) -> dict[str, Any]:
    """The recipe as a viewer may see it, with no filesystem path: a local base
    model folder is named, for staff, by its place in the data directory (which
    a new request takes back), for others by its last part only. Hub ids are
    shown as they are."""
    base_model = recipe.get("base_model", "")
    shown = base_model_name(base_model)
    if shown == base_model:
        return recipe
    return {**recipe, "base_model": shown if staff else PurePath(shown).name}


def recipe_form_query(recipe: dict[str, Any]) -> str:
    """The generate page's query string that fills its form with `recipe`.

    Its prompt already carries the trigger words it was made with, so the form
    does not insert them again.
    """
    loras = "\n".join(f"{x['name']}:{x['weight']:g}" for x in recipe.get("loras", []))
    fields = {
        "prompt": recipe.get("prompt", ""),
        "negative_prompt": recipe.get("negative_prompt", ""),
        "base_model": recipe.get("base_model", ""),
        "steps": recipe.get("steps", ""),
        "guidance": recipe.get("guidance", ""),
        "seed": recipe.get("seed", ""),
        "width": recipe.get("width", ""),
        "height": recipe.get("height", ""),
        "scheduler": recipe.get("scheduler", ""),
        "num_images": 1,
        "loras": loras,
        "insert_trigger_words": "0",
    }
    return urlencode(fields)


# The worker puts a job's latest preview in the shared cache (file or Redis,
# which every web process reads) rather than in storage: it is small, rewritten
# every few steps and needs no cleaning up (it expires).
PREVIEW_SECONDS = 3600


def generation_preview_key(job_id: int) -> str:
    return f"generation-preview:{job_id}"


def generation_job_preview(job: GenerationJob) -> bytes | None:
    """The latest preview (a small WEBP) of the image the job is making; None
    before its first one, and an hour after its last."""
    from django.core.cache import cache

    return cache.get(generation_preview_key(job.pk))
