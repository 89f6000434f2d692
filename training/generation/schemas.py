"""Request and response shapes of the generation API."""

from __future__ import annotations

from typing import Any

from ninja import ModelSchema, Schema
from pydantic import Field

from albums.models import Album
from training.generation.selectors import generation_job_images, image_recipe
from training.generation.services import effective_prompt
from training.models import GenerationJob


class LoraChoiceIn(Schema):
    name: str | None = Field(None, max_length=200, description="A registered LoRA")
    id: int | None = Field(None, description="Or its id")
    weight: float | None = Field(None, description="Default: the LoRA's own")


class GenerateIn(Schema):
    # Types only here: the limits (from settings) are checked by the service,
    # which names each bad field and the range it accepts.
    prompt: str = Field(..., max_length=100_000)
    negative_prompt: str = Field("", max_length=100_000)
    steps: int = 25
    guidance: float = 7.5
    seed: int | None = Field(None, description="Random (and recorded) when left out")
    width: int = 512
    height: int = 512
    scheduler: str = Field("ddim", max_length=40)
    num_images: int = 1
    loras: list[LoraChoiceIn] = Field(default_factory=list, max_length=100)
    insert_trigger_words: bool = Field(
        True, description="Put each LoRA's trigger words in front of the prompt"
    )
    album: str = Field(
        "",
        max_length=1000,
        description="Album name (made if missing); default GENERATION_DEFAULT_ALBUM",
    )
    base_model: str = Field(
        "", max_length=1000, description="Default GENERATION_BASE_MODEL"
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
