from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from imagineer_project.runs import BaseRun

# Sources whose labels are imported, not written here: each text is recorded
# once per image, kind and source (label_get_or_create; label_imported_once).
IMPORTED_SOURCES = ("html", "sidecar", "legacy")


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Label(models.Model):
    """A piece of text about an image: a caption, a tag, alt text, a note..."""

    class Kind(models.TextChoices):
        CAPTION = "caption", "Caption"
        DESCRIPTION = "description", "Description"
        TAG = "tag", "Tag"
        NSFW = "nsfw", "NSFW rating"
        ALT_TEXT = "alt_text", "Alt text"
        TITLE = "title", "Title"
        FIGCAPTION = "figcaption", "Figure caption"
        PAGE_TEXT = "page_text", "Page text"
        PAGE_TITLE = "page_title", "Page title"
        NOTE = "note", "Note"

    class Source(models.TextChoices):
        HUMAN = "human", "Human"
        CLAUDE = "claude", "Claude"
        HTML = "html", "HTML"
        SIDECAR = "sidecar", "Sidecar file"
        LEGACY = "legacy", "Legacy import"

    class Review(models.TextChoices):
        UNREVIEWED = "unreviewed", "Unreviewed"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    image = models.ForeignKey(
        "albums.Image", on_delete=models.CASCADE, related_name="labels"
    )
    kind = models.CharField(max_length=16, choices=Kind)
    text = models.TextField()
    # sha256 of `text`, kept by save(): the unique key of an imported label (a
    # page's text can be too long for an index of its own).
    text_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    source = models.CharField(max_length=16, choices=Source, default=Source.HUMAN)
    model_name = models.CharField(max_length=100, blank=True)
    prompt_version = models.CharField(max_length=50, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # Meaningful for captions: a rejected caption never trains; an approved
    # human one always wins (labeling.selectors.training_caption).
    review = models.CharField(max_length=12, choices=Review, default=Review.UNREVIEWED)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["image_id", "kind", "id"]
        indexes = [
            # Image pages and the API detail: labels of one image, by kind.
            models.Index(fields=["image", "kind"], name="label_image_kind"),
            # Analytics: tag counts (GROUP BY text WHERE kind = 'tag'). Partial:
            # only tags are short enough for a btree; page text can run long.
            models.Index(
                fields=["text"], name="label_tag_text", condition=Q(kind="tag")
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__isnull=True)
                | Q(confidence__gte=0, confidence__lte=1),
                name="label_confidence_0_1",
            ),
            # An import run twice (a page scraped again, a folder re-imported)
            # records each text once; what people and Claude write may repeat.
            models.UniqueConstraint(
                fields=["image", "kind", "source", "text_sha256"],
                condition=Q(source__in=IMPORTED_SOURCES),
                name="label_imported_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.text[:60]}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.fill_digest()
        fields = kwargs.get("update_fields")
        if fields is not None and "text" in fields:
            kwargs["update_fields"] = [*fields, "text_sha256"]
        super().save(*args, **kwargs)

    def fill_digest(self) -> None:
        """Set text_sha256 from text (bulk_create does not call save)."""
        self.text_sha256 = text_digest(self.text)


class LabelingJob(BaseRun):
    """Claude labels one image, a selection, or a whole album."""

    class Style(models.TextChoices):
        TRAINING = "training", "Training caption"
        DESCRIPTION = "description", "Description"

    album = models.ForeignKey(
        "albums.Album",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="labeling_jobs",
    )
    # An explicit selection (one image or many); empty means "the album's images".
    image_ids = models.JSONField(default=list, blank=True)
    style = models.CharField(max_length=12, choices=Style, default=Style.TRAINING)
    force = models.BooleanField(
        default=False, help_text="Re-label images this prompt version already labeled."
    )
    limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Label at most this many images."
    )
    budget_usd = models.DecimalField(
        "budget (USD)", max_digits=10, decimal_places=4, null=True, blank=True
    )
    use_batch = models.BooleanField(
        "Message Batches API",
        default=False,
        help_text="Send the images as Message Batches: half the price, results "
        "within 24 hours.",
    )
    # [{"id": "msgbatch_...", "image_ids": [...]}]: what was submitted, so a
    # resumed job polls these instead of paying twice.
    batches = models.JSONField(default=list, blank=True)
    model_name = models.CharField(max_length=100)
    prompt_version = models.CharField(max_length=50)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    labeled_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(
        "cost (USD)", max_digits=12, decimal_places=6, default=Decimal(0)
    )
    budget_exhausted = models.BooleanField(default=False)

    task_path = "labeling.tasks.run_labeling_job"

    class Meta(BaseRun.Meta):
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Labeling job #{self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("admin:labeling_labelingjob_change", args=[self.pk])

    @property
    def label_kind(self) -> str:
        """The label kind this job's style writes its text as."""
        return {
            self.Style.TRAINING: Label.Kind.CAPTION,
            self.Style.DESCRIPTION: Label.Kind.DESCRIPTION,
        }[self.style]


class LabelingItem(models.Model):
    """What one job did with one image; the job's resume point and failure list."""

    class Outcome(models.TextChoices):
        LABELED = "labeled", "Labeled"
        FAILED = "failed", "Failed"

    job = models.ForeignKey(LabelingJob, on_delete=models.CASCADE, related_name="items")
    image = models.ForeignKey(
        "albums.Image", on_delete=models.CASCADE, related_name="labeling_items"
    )
    outcome = models.CharField(max_length=8, choices=Outcome)
    reason = models.CharField(max_length=500, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # A task delivered twice, or resumed after a crash, records each image once.
            models.UniqueConstraint(fields=["job", "image"], name="labeling_item_once"),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} image {self.image_id}: {self.outcome}"
