"""Request and response shapes for the labeling API."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from django.db.models import QuerySet
from ninja import ModelSchema, Schema
from pydantic import Field, StringConstraints

from imagineer_project.permissions import is_staff
from imagineer_project.run_api import RunFilterIn
from labeling.models import Label, LabelingItem, LabelingJob

LabelText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)
]


class LabelJobIn(Schema):
    style: LabelingJob.Style = LabelingJob.Style.TRAINING
    force: bool = Field(
        False, description="Re-label images this prompt version already labeled."
    )
    budget: Decimal | None = Field(
        None, gt=0, max_digits=10, decimal_places=4, description="Stop at this USD."
    )
    batch: bool = Field(
        False,
        description="Use the Message Batches API: half the price, results within "
        "24 hours (no budget).",
    )


class AlbumLabelJobIn(LabelJobIn):
    limit: int | None = Field(None, ge=1, description="Label at most this many.")


class LabelOut(ModelSchema):
    author: str | None

    class Meta:
        model = Label
        fields = [
            "id",
            "image",
            "kind",
            "text",
            "source",
            "review",
            "model_name",
            "prompt_version",
            "confidence",
            "created",
            "updated",
        ]

    @staticmethod
    def resolve_author(label: Label, context: dict[str, Any]) -> str | None:
        # Who wrote a label is for staff; visitors see the text only.
        if not label.author_id or not is_staff(context["request"]):
            return None
        return label.author.get_username()


class LabelIn(Schema):
    kind: Label.Kind
    text: LabelText
    review: Label.Review | None = None


class LabelPatchIn(Schema):
    kind: Label.Kind | None = None
    text: LabelText | None = None
    review: Label.Review | None = None


class LabelingFailureOut(ModelSchema):
    class Meta:
        model = LabelingItem
        fields = ["image", "reason", "created"]


class LabelingJobOut(ModelSchema):
    percent: int
    album_id: int | None

    class Meta:
        model = LabelingJob
        fields = [
            "id",
            "status",
            "style",
            "force",
            "limit",
            "budget_usd",
            "use_batch",
            "model_name",
            "prompt_version",
            "progress_done",
            "progress_total",
            "message",
            "error",
            "labeled_count",
            "skipped_count",
            "failed_count",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "budget_exhausted",
            "created",
            "started_at",
            "finished_at",
        ]


class LabelingJobDetailOut(LabelingJobOut):
    image_ids: list[int]
    failures: list[LabelingFailureOut]

    @staticmethod
    def resolve_failures(job: LabelingJob) -> list[LabelingItem]:
        return list(job.items.filter(outcome="failed").order_by("id")[:500])


class LabelingJobFilterIn(RunFilterIn):
    album: int | None = None

    def apply(self, runs: QuerySet) -> QuerySet:
        runs = super().apply(runs)
        return runs.filter(album_id=self.album) if self.album else runs


class CaptionOut(Schema):
    text: str
    label_id: int | None
    reason: str
    rule: str


class ImageLabelsOut(Schema):
    image_id: int
    training_caption: CaptionOut
    labels: list[LabelOut]
