"""Request and response shapes of the set templates and sets API.

Types only on the way in: the services check the values (sizes, slot keys,
LoRAs, the template's table) and name every bad field at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from ninja import ModelSchema, Schema
from pydantic import Field

from albums.models import Album
from imagineer_project.run_api import RunFilterIn
from training.generation.schemas import AlbumRefOut, LoraChoiceIn
from training.models import SetRun, SetTemplate, SetVariant
from training.sets.runs import slot_tried
from training.sets.selectors import SlotStatus, slot_statuses

# --- templates ------------------------------------------------------------------


class TemplateLoraIn(Schema):
    name: str = Field(..., max_length=200, description="A registered LoRA")
    weight: float | None = Field(None, description="Default: the LoRA's own")


class TemplateIn(Schema):
    # All optional here: the service names every missing or bad field at once
    # (a new template needs a name, a table and a prompt template). Field order
    # matters: `csv` comes after `columns` and `rows`, so a CSV sent with them
    # is what the table becomes.
    name: str | None = Field(None, max_length=200)
    slug: str | None = Field(
        None, max_length=100, description="Default: made from the name"
    )
    description: str | None = Field(None, max_length=20_000)
    columns: list[str] | None = Field(None, max_length=100)
    rows: list[dict[str, Any]] | None = Field(
        None,
        max_length=1000,
        description='[{"key"?, "label"?, "values": {column: value}}]; a missing '
        "key or label is made from the values",
    )
    csv: str | None = Field(
        None,
        max_length=1_000_000,
        description="Instead of columns and rows: a header row naming the "
        "columns (`key` and `label` optional), then one line per slot",
    )
    base_prompt: str | None = Field(None, max_length=20_000)
    prompt_template: str | None = Field(
        None, max_length=20_000, description="With {column} placeholders"
    )
    style_suffix: str | None = Field(None, max_length=20_000)
    example_theme: str | None = Field(None, max_length=500)
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = Field(None, max_length=20_000)
    loras: list[TemplateLoraIn] | None = Field(None, max_length=100)
    base_model: str | None = Field(None, max_length=500)


class TemplateRowOut(Schema):
    key: str
    label: str
    values: dict[str, str]


class TemplateLoraOut(Schema):
    name: str
    weight: float | None


class TemplateOut(ModelSchema):
    columns: list[str]  # a JSONField, which ninja would declare an object
    slot_count: int
    run_count: int

    class Meta:
        model = SetTemplate
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "columns",
            "builtin",
            "edited",
            "example_theme",
            "width",
            "height",
        ]

    @staticmethod
    def resolve_run_count(template: SetTemplate) -> int:
        # Annotated by the API's template query; a fresh row counts once.
        count = getattr(template, "run_count", None)
        return template.runs.count() if count is None else count


class TemplateDetailOut(TemplateOut):
    # A subclass's own Meta is not read: its extra columns are declared here.
    base_prompt: str
    prompt_template: str
    style_suffix: str
    negative_prompt: str
    base_model: str
    rows: list[TemplateRowOut]
    loras: list[TemplateLoraOut]
    created: datetime
    updated: datetime


class PreviewIn(Schema):
    theme: str | None = Field(
        None, max_length=500, description="Default: the template's example theme"
    )
    loras: str = Field(
        "",
        max_length=2000,
        description="LoRA names, comma-separated: their trigger words go in front",
    )


class PromptOut(Schema):
    key: str
    label: str
    prompt: str


class SetGenerateIn(Schema):
    # Left out (null): the set album's setting when it already holds this set,
    # else the template's, else the generation default.
    theme: str | None = Field(None, max_length=1000)
    album: str = Field(
        "",
        max_length=1000,
        description='Album name (made if missing); default "<template> – <theme>"',
    )
    loras: list[LoraChoiceIn] | None = Field(None, max_length=100)
    base_model: str | None = Field(None, max_length=1000)
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = Field(None, max_length=40)
    negative_prompt: str | None = Field(None, max_length=100_000)
    seed: int | None = Field(None, description="The set seed; random when new")
    variants: int | None = Field(None, description="Images per slot")
    slots: list[str] = Field(
        default_factory=list, max_length=1000, description="Slot keys; default all"
    )
    only_missing: bool = Field(
        False, description="Render only the slots not filled in the album yet"
    )
    insert_trigger_words: bool = True


# --- set runs -------------------------------------------------------------------


class SetRunFilterIn(RunFilterIn):
    album: int | None = Field(None, description="Runs into this album (its id)")
    template: int | None = Field(None, description="Runs of this template (its id)")

    def apply(self, runs: QuerySet) -> QuerySet:
        runs = super().apply(runs)
        if self.album:
            runs = runs.filter(set_album__album_id=self.album)
        return runs.filter(template_id=self.template) if self.template else runs


class TemplateRefOut(ModelSchema):
    class Meta:
        model = SetTemplate
        fields = ["id", "slug", "name"]


class SetRunOut(ModelSchema):
    percent: int
    template: TemplateRefOut
    album: AlbumRefOut | None
    steps: int | None = Field(description="Denoising steps of each image")

    class Meta:
        model = SetRun
        fields = [
            "id",
            "status",
            "progress_done",
            "progress_total",
            "message",
            "error",
            "cancel_requested",
            "mode",
            "theme",
            "set_seed",
            "variants",
            "slot_keys",
            "items_done",
            "failed_items",
            "current_slot",
            "current_step",
            "created",
            "started_at",
            "finished_at",
        ]

    @staticmethod
    def resolve_album(run: SetRun) -> Album | None:
        return run.set_album.album if run.set_album_id else None

    @staticmethod
    def resolve_steps(run: SetRun) -> int | None:
        # Lists annotate it, so they need not load `render` (every prompt).
        if hasattr(run, "render_steps"):
            return run.render_steps
        return run.render.get("steps")


class SetRunSlotOut(Schema):
    key: str
    label: str
    status: str = Field(
        description="The slot in the album now: filled, missing, failed"
    )
    done: bool = Field(description="This run tried every variant of it")
    image_id: int | None
    seed: int | None
    thumbnail_url: str | None
    error: str


class SetRunDetailOut(SetRunOut):
    slots: list[SetRunSlotOut]

    @staticmethod
    def resolve_slots(run: SetRun) -> list[dict[str, Any]]:
        if run.set_album is None:
            return []
        statuses = {s.key: s for s in slot_statuses(run.set_album)}
        tried = set(run.items_done)
        return [
            {
                "key": key,
                "label": slot.label,
                "status": slot.status,
                "done": slot_tried(run, key, tried),
                "image_id": slot.image_id,
                "seed": slot.seed,
                "thumbnail_url": slot.image.thumbnail_url if slot.image else None,
                "error": slot.error,
            }
            for key in run.slot_keys
            if (slot := statuses.get(key)) is not None
        ]


# --- the slots of a set album ---------------------------------------------------


class VariantOut(Schema):
    image_id: int
    seed: int
    thumbnail_url: str

    @staticmethod
    def resolve_thumbnail_url(variant: SetVariant) -> str:
        return variant.image.thumbnail_url


class SlotOut(Schema):
    key: str
    label: str
    position: int
    prompt: str
    status: str = Field(description="filled, missing or failed")
    image_id: int | None
    seed: int | None
    thumbnail_url: str | None
    error: str
    in_template: bool = Field(
        description="False for a slot whose row was removed from the template"
    )
    variants: list[VariantOut] = Field(
        description="Every image rendered for it still in the album, oldest first"
    )

    @staticmethod
    def resolve_thumbnail_url(slot: SlotStatus) -> str | None:
        return slot.image.thumbnail_url if slot.image else None


class RegenerateIn(Schema):
    seed: int | None = Field(None, description="The new set seed; random if left out")


class ChooseIn(Schema):
    image_id: int
