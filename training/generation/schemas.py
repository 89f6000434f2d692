"""Request and response shapes of the generation API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from ninja import ModelSchema, Schema
from pydantic import Field

from albums.models import Album
from training.generation.selectors import generation_job_images, image_recipe
from training.generation.services import (
    SEED_MAX,
    WEIGHT_RANGE,
    effective_prompt,
    scheduler_names,
)
from training.models import GenerationJob
from training.paths import base_model_name


class LoraChoiceIn(Schema):
    name: str | None = Field(None, max_length=200, description="A registered LoRA")
    id: int | None = Field(None, description="Or its id")
    weight: float | None = Field(
        None,
        description="Default: the LoRA's own",
        json_schema_extra={"minimum": WEIGHT_RANGE[0], "maximum": WEIGHT_RANGE[1]},
    )


# An image side the generator takes (services.size_error says the same).
_SIDE = {
    "minimum": settings.GENERATION_MIN_SIZE,
    "maximum": settings.GENERATION_MAX_SIZE,
    "multipleOf": 8,
}


class GenerateIn(Schema):
    # The limits (from settings) are checked by the service, which names each
    # bad field and the range it accepts; the schema declares the same ones.
    prompt: str = Field(
        ...,
        max_length=100_000,
        json_schema_extra={
            "minLength": 1,
            "maxLength": settings.GENERATION_MAX_PROMPT_CHARS,
            "pattern": r"\S",
        },
    )
    negative_prompt: str = Field(
        "",
        max_length=100_000,
        json_schema_extra={"maxLength": settings.GENERATION_MAX_PROMPT_CHARS},
    )
    steps: int = Field(
        25, json_schema_extra={"minimum": 1, "maximum": settings.GENERATION_MAX_STEPS}
    )
    guidance: float = Field(
        7.5,
        json_schema_extra={
            "minimum": settings.GENERATION_GUIDANCE_RANGE[0],
            "maximum": settings.GENERATION_GUIDANCE_RANGE[1],
        },
    )
    seed: int | None = Field(
        None,
        description="Random (and recorded) when left out",
        json_schema_extra={"minimum": 0, "maximum": SEED_MAX},
    )
    width: int = Field(512, json_schema_extra=_SIDE)
    height: int = Field(512, json_schema_extra=_SIDE)
    scheduler: str = Field(
        "ddim", max_length=40, json_schema_extra={"enum": scheduler_names()}
    )
    num_images: int = Field(
        1, json_schema_extra={"minimum": 1, "maximum": settings.GENERATION_MAX_IMAGES}
    )
    loras: list[LoraChoiceIn] = Field(default_factory=list, max_length=100)
    insert_trigger_words: bool = Field(
        True, description="Put each LoRA's trigger words in front of the prompt"
    )
    album: str = Field(
        "",
        max_length=1000,
        description="Album name (made if missing); default GENERATION_DEFAULT_ALBUM",
        json_schema_extra={"maxLength": 200},
    )
    base_model: str = Field(
        "",
        max_length=1000,
        description="Default GENERATION_BASE_MODEL",
        json_schema_extra={"maxLength": 500},
    )


class AlbumRefOut(ModelSchema):
    class Meta:
        model = Album
        fields = ["id", "slug", "name"]


class StackEntryOut(Schema):
    lora_id: int
    name: str
    weight: float
    sha256: str
    trigger_words: list[str]


class GenerationJobOut(ModelSchema):
    percent: int
    effective_prompt: str
    loras: list[StackEntryOut]
    album: AlbumRefOut | None
    image_ids: list[int]

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "status",
            "progress_done",
            "progress_total",
            "message",
            "error",
            "cancel_requested",
            "prompt",
            "negative_prompt",
            "base_model",
            "steps",
            "guidance",
            "seed",
            "width",
            "height",
            "scheduler",
            "num_images",
            "insert_trigger_words",
            "created",
            "started_at",
            "finished_at",
        ]

    @staticmethod
    def resolve_effective_prompt(job: GenerationJob) -> str:
        return effective_prompt(job)

    @staticmethod
    def resolve_base_model(job: GenerationJob) -> str:
        return base_model_name(job.base_model)


class GeneratedImageOut(Schema):
    id: int
    url: str
    thumbnail_url: str
    file_url: str
    recipe: dict[str, Any] | None


class GenerationJobDetailOut(GenerationJobOut):
    images: list[GeneratedImageOut]

    @staticmethod
    def resolve_images(job: GenerationJob) -> list[dict[str, Any]]:
        return [
            {
                "id": image.pk,
                "url": image.get_absolute_url(),
                "thumbnail_url": image.thumbnail_url,
                "file_url": image.file_url,
                "recipe": image_recipe(image),
            }
            for image in generation_job_images(job)
        ]
