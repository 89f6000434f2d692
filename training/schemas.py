"""Request and response shapes of /api/training/runs and /api/loras.

Every endpoint behind these shapes is staff only: runs carry configs, base
model paths and logs, and LoRAs may be trained on private albums. No shape
carries a storage key: a LoRA's file is fetched from its download URL.
"""

from __future__ import annotations

from typing import Annotated, Any

from django.db.models import QuerySet
from ninja import ModelSchema, Schema
from pydantic import ConfigDict, Field, StringConstraints, model_validator

from imagineer_project.run_api import RunFilterIn
from training.datasets.services import MAX_REPEATS
from training.models import DatasetVersion, Lora, TrainingRun
from training.paths import base_model_name
from training.services import training_run_can_start

AlbumRef = Annotated[str, StringConstraints(min_length=1, max_length=220)] | int
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class TrainingConfigIn(Schema):
    """Any subset of the config; the rest takes the defaults in settings.
    Ranges: see GET /api/training/runs/config."""

    model_config = ConfigDict(extra="forbid")

    steps: int | None = None
    rank: int | None = None
    alpha: float | None = None
    learning_rate: float | None = None
    warmup_steps: int | None = None
    gradient_accumulation: int | None = None
    batch_size: int | None = None
    resolution: int | None = None
    random_flip: bool | None = None
    center_crop: bool | None = None
    mixed_precision: str | None = None
    seed: int | None = None
    checkpoint_every: int | None = None
    gradient_checkpointing: bool | None = None
    sample_steps: int | None = None
    lora_targets: str | None = None
    conv_rank: int | None = None
    conv_alpha: float | None = None
    train_text_encoder: bool | None = None
    text_encoder_lr: float | None = None
    bucketing: bool | None = None
    bucket_min_side: int | None = None
    bucket_max_side: int | None = None
    bucket_step: int | None = None
    shuffle_tags: bool | None = None
    keep_tokens: int | None = None
    caption_dropout: float | None = None
    reg_album: int | None = Field(
        None, description="Album id of regularisation images; 0 or absent: none."
    )
    reg_weight: float | None = None
    validation_split: float | None = None
    optimizer: str | None = None
    lr_scheduler: str | None = None
    lr_cycles: int | None = None
    loss_type: str | None = None
    huber_c: float | None = None
    min_snr_gamma: float | None = None
    noise_offset: float | None = None
    compile_unet: bool | None = None


class TrainingRunIn(Schema):
    """Train on `albums` (a dataset version is built, or the identical one
    reused) or on an existing `dataset` version: exactly one of the two."""

    albums: list[AlbumRef] | None = Field(None, min_length=1, max_length=100)
    dataset: int | None = None
    name: Text = ""
    base_model: Annotated[str, StringConstraints(strip_whitespace=True)] = Field(
        "",
        max_length=500,
        description="Local diffusers folder or hub id; default TRAINING_BASE_MODEL.",
    )
    # With albums: absent takes the first album's trigger word; "" for none.
    trigger_word: Annotated[str, StringConstraints(max_length=100)] | None = None
    include_nsfw: bool = False
    # With albums: one per album, in the same order: how often its images
    # count per epoch (kohya's folder repeats). Absent: 1 each.
    repeats: list[Annotated[int, Field(ge=1, le=MAX_REPEATS)]] | None = Field(
        None, max_length=100
    )
    config: TrainingConfigIn = Field(default_factory=TrainingConfigIn)
    start: bool = Field(True, description="Queue for the gpu worker now.")

    @model_validator(mode="after")
    def _one_source(self) -> TrainingRunIn:
        if (self.albums is None) == (self.dataset is None):
            raise ValueError("Give either albums or dataset (not both).")
        if self.repeats is not None and self.albums is None:
            raise ValueError("repeats go with albums (a dataset has its own).")
        return self


class ConfigFieldOut(Schema):
    name: str
    type: str
    section: str = Field(description="Where the admin form shows it.")
    default: Any = Field(
        description="Unset resolution: the base model family's (SDXL 1024); unset "
        "learning_rate with prodigy: 1.0."
    )
    minimum: float | None
    maximum: float | None
    choices: list[str]
    optimizer_ranges: dict[str, list[float]] = Field(
        description="The range under these optimizers instead (prodigy's "
        "learning rate)."
    )
    help: str
    kohya: str = Field(description="sd-scripts' name for the option.")


class TrainingRunFilterIn(RunFilterIn):
    dataset: int | None = None

    def apply(self, runs: QuerySet) -> QuerySet:
        runs = super().apply(runs)
        return runs.filter(dataset_id=self.dataset) if self.dataset else runs


class DatasetBriefOut(ModelSchema):
    class Meta:
        model = DatasetVersion
        fields = ["id", "name", "trigger_word", "manifest_sha256", "captioned_count"]


class TrainingRunOut(ModelSchema):
    dataset_id: int
    percent: int
    lora_id: int | None
    can_start: bool
    sample_album_id: int | None

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "name",
            "status",
            "base_model",
            "progress_done",
            "progress_total",
            "loss",
            "learning_rate",
            "images_per_second",
            "eta_seconds",
            "last_checkpoint_step",
            "message",
            "error",
            "attempts",
            "cancel_requested",
            "created",
            "enqueued_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]

    @staticmethod
    def resolve_base_model(run: TrainingRun) -> str:
        # A local folder by its name: no response shows a filesystem path.
        return base_model_name(run.base_model)

    @staticmethod
    def resolve_lora_id(run: TrainingRun) -> int | None:
        # Annotated by the run queries (training.runs), so lists cost one query.
        return getattr(run, "lora_id", None)

    @staticmethod
    def resolve_can_start(run: TrainingRun) -> bool:
        return training_run_can_start(run)


class TrainingRunDetailOut(TrainingRunOut):
    dataset: DatasetBriefOut
    config: dict[str, Any]
    manifest: dict[str, Any]
    manifest_sha256: str
    loss_curve: list[list[float]]
    sample_image_ids: list[int]

    @staticmethod
    def resolve_sample_image_ids(run: TrainingRun) -> list[int]:
        if run.sample_album_id is None:
            return []
        members = run.sample_album.memberships.order_by("position", "id")
        return list(members.values_list("image_id", flat=True))


class TrainingRunLogOut(Schema):
    id: int
    status: str
    lines: list[str]


class LoraFilterIn(Schema):
    q: str | None = Field(None, max_length=200, description="Name contains.")
    base_model: str | None = Field(None, max_length=500)


class LoraOut(ModelSchema):
    source_run_id: int | None
    source_step: int | None
    sample_album_id: int | None
    download_url: str

    class Meta:
        model = Lora
        fields = [
            "id",
            "name",
            "trigger_words",
            "default_weight",
            "base_model",
            "rank",
            "alpha",
            "family",
            "size",
            "sha256",
            "created",
        ]

    @staticmethod
    def resolve_base_model(lora: Lora) -> str:
        return base_model_name(lora.base_model)

    @staticmethod
    def resolve_download_url(lora: Lora) -> str:
        return f"/api/loras/{lora.pk}/download"


# Metadata keys that name the base model: a file made elsewhere may hold a path.
BASE_MODEL_KEYS = ("base_model", "ss_sd_model_name")


class LoraDetailOut(LoraOut):
    metadata: dict[str, str]

    @staticmethod
    def resolve_metadata(lora: Lora) -> dict[str, str]:
        return {
            key: base_model_name(value) if key in BASE_MODEL_KEYS else value
            for key, value in lora.metadata.items()
        }
