"""Imports of the predecessor's output trees and image packs: one run per
import, one item per file it met."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from imagineer_project.runs import BaseRun


class ImportRun(BaseRun):
    """Importing outputs trees (`sources`) and image packs (`packs`), folders on
    the worker's machine, into albums; resumable file by file."""

    # Absolute folder paths, as given (staff only; the API shows them relative
    # to LEGACY_IMPORT_ROOTS).
    sources = models.JSONField(default=list, blank=True)
    packs = models.JSONField(default=list, blank=True)
    dry_run = models.BooleanField(
        default=False, help_text="Walk and classify only: no album, image or label."
    )
    # {album name: "created" | "reused" | "would create" | "exists"}: what the
    # run did (or would do) with each album of the taxonomy it met.
    albums = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    task_path = "legacy.tasks.run_legacy_import"
    resume_note = "Queued again; it goes on at the first file it has not recorded"

    class Meta(BaseRun.Meta):
        ordering = ["-id"]

    def __str__(self) -> str:
        kind = "Dry run" if self.dry_run else "Legacy import"
        return f"{kind} #{self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("admin:legacy_importrun_change", args=[self.pk])

    def retry_refusal(self) -> str:
        gone = [
            Path(p).name for p in [*self.sources, *self.packs] if not Path(p).is_dir()
        ]
        if gone:
            return f"Its folder(s) {', '.join(gone)} are not there any more."
        return ""


class ImportItem(models.Model):
    """One file a run met, and what became of it."""

    class Outcome(models.TextChoices):
        CREATED = "created", "Created"
        DUPLICATE = "duplicate", "Duplicate (already in its album)"
        NEAR_DUPLICATE = "near_duplicate", "Created, near a library image"
        ATTACHED = "attached", "Attached (already in the library)"
        REJECTED = "rejected", "Rejected"
        SKIPPED = "skipped", "Skipped"
        # Written before the file is ingested: a run that dies in between
        # finds it and knows the image may be its own.
        PENDING = "pending", "Pending"

    # The outcomes whose file is in the library (its image is the item's image).
    IMPORTED = (
        Outcome.CREATED,
        Outcome.NEAR_DUPLICATE,
        Outcome.DUPLICATE,
        Outcome.ATTACHED,
    )

    class Kind(models.TextChoices):
        SINGLE = "single", "Single"
        DECK = "deck", "Deck"
        ZODIAC = "zodiac", "Zodiac set"
        LORA_TEST = "lora_test", "LoRA experiment"
        BATCH = "batch", "Batch"
        PACK = "pack", "Reference pack"
        OTHER = "other", "Other file"

    class Sidecar(models.TextChoices):
        OK = "ok", "Read"
        MISSING = "missing", "Missing"
        MALFORMED = "malformed", "Malformed"
        NONE = "", "Not expected"  # packs and files that are no image

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="items")
    root = models.CharField(max_length=1000, help_text="The source folder.")
    relative_path = models.CharField(max_length=1000)
    kind = models.CharField(max_length=12, choices=Kind)
    outcome = models.CharField(max_length=16, choices=Outcome)
    reason = models.CharField(max_length=500, blank=True)
    album_name = models.CharField(max_length=200, blank=True)
    album = models.ForeignKey(
        "albums.Album",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    image = models.ForeignKey(
        "albums.Image",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="legacy_items",
    )
    sidecar_status = models.CharField(
        max_length=12, choices=Sidecar, default=Sidecar.NONE, blank=True
    )
    # The sidecar's JSON as it was (staff only).
    sidecar = models.JSONField(null=True, blank=True)
    # When the image was made: the sidecar's time, else a date in the name,
    # else the file's modification time (`made_at_from` says which).
    made_at = models.DateTimeField(null=True, blank=True)
    made_at_from = models.CharField(max_length=8, blank=True)
    bytes = models.PositiveBigIntegerField(default=0)
    # The source file's own hash (not the stored image's, whose metadata is
    # stripped): legacy_reconcile tells a changed file by it.
    source_sha256 = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # One row per file per run: the run's resume point.
            models.UniqueConstraint(
                fields=["run", "root", "relative_path"], name="import_item_once"
            ),
        ]
        indexes = [
            # The items of a run by outcome (the admin's filter, the API's).
            models.Index(fields=["run", "outcome"], name="import_item_outcome"),
            # An image's provenance (its page, its API detail).
            models.Index(
                fields=["image", "-id"],
                name="import_item_image",
                condition=Q(image__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.relative_path}: {self.outcome}"

    @property
    def root_name(self) -> str:
        """The source folder by its name only (what callers may see)."""
        return Path(self.root).name
