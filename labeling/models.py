from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Label(models.Model):
    """A piece of text about an image: a caption, a tag, alt text, a note..."""

    class Kind(models.TextChoices):
        CAPTION = "caption", "Caption"
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

    image = models.ForeignKey(
        "albums.Image", on_delete=models.CASCADE, related_name="labels"
    )
    kind = models.CharField(max_length=16, choices=Kind)
    text = models.TextField()
    source = models.CharField(max_length=16, choices=Source, default=Source.HUMAN)
    model_name = models.CharField(max_length=100, blank=True)
    prompt_version = models.CharField(max_length=50, blank=True)
    confidence = models.FloatField(null=True, blank=True)
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
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__isnull=True)
                | Q(confidence__gte=0, confidence__lte=1),
                name="label_confidence_0_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.text[:60]}"
