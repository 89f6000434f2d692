from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.urls import reverse

from imagineer_project.runs import BaseRun

if TYPE_CHECKING:
    from imagineer_project.permissions import Viewer


class SourceKind(models.TextChoices):
    UPLOAD = "upload", "Upload"
    SCRAPE = "scrape", "Scrape"
    GENERATED = "generated", "Generated"
    LEGACY = "legacy", "Legacy import"


class Visibility(models.TextChoices):
    PUBLIC = "public", "Public"
    PRIVATE = "private", "Private"


class NearDuplicates(models.TextChoices):
    """What every door (upload, bulk upload, folder import, scrape) does with a
    file whose perceptual hash is within the near-duplicate distance of a
    library image. One policy, one default: docs/api.md "Duplicates and formats"."""

    KEEP = "keep", "Keep both"
    SKIP = "skip", "Skip the new file (link the library's copy)"
    REPLACE_SMALLER = "replace_smaller", "Keep the larger of the two"


class NsfwSource(models.TextChoices):
    HUMAN = "human", "A person"
    MODEL = "model", "The labeler"


class ImageQuerySet(models.QuerySet):
    def public(self) -> ImageQuerySet:
        """What a visitor (anonymous, or signed in without staff status) may
        see: public, not NSFW, and not held exclusively by private albums. An
        image in no album is not held by a private one, so it stays visible."""
        # "No membership whose image has no public membership", as two nested
        # NOT EXISTS: PostgreSQL plans them as anti-joins probing the image_id
        # index per row, so a LIMIT stops early. The equivalent "not held OR held
        # by a public album" made it hash every membership row on each query
        # (110 ms with 100k memberships, for a 50-image page).
        public_held = AlbumImage.objects.filter(
            image=OuterRef("image"), album__visibility=Visibility.PUBLIC
        )
        only_private = AlbumImage.objects.filter(image=OuterRef("pk")).exclude(
            Exists(public_held)
        )
        return self.filter(
            ~Exists(only_private),
            visibility=Visibility.PUBLIC,
            is_nsfw=False,
        )

    def visible_to(self, user: Viewer) -> ImageQuerySet:
        if getattr(user, "is_staff", False) and user.is_active:
            return self
        return self.public()


def thumbnail_url(image_id: int) -> str:
    """An image's thumbnail, by id alone (rows that hold only the id)."""
    return f"/api/images/{image_id}/thumbnail"


class Image(models.Model):
    """One stored image, addressed by the sha256 of its (sanitised) bytes."""

    class Format(models.TextChoices):
        JPEG = "JPEG", "JPEG"
        PNG = "PNG", "PNG"
        WEBP = "WEBP", "WebP"
        GIF = "GIF", "GIF"
        BMP = "BMP", "BMP"

    class ReviewStatus(models.TextChoices):
        UNREVIEWED = "unreviewed", "Unreviewed"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    sha256 = models.CharField(max_length=64, unique=True)
    file = models.FileField(max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8, choices=Format)
    bytes = models.PositiveBigIntegerField(help_text="Size of the stored file.")
    is_animated = models.BooleanField(default=False)
    # 64-bit DCT perceptual hash stored as a signed bigint (PostgreSQL has no
    # unsigned 64-bit type); compare with XOR + popcount.
    phash = models.BigIntegerField()
    original_filename = models.CharField(max_length=255, blank=True)
    source_kind = models.CharField(max_length=16, choices=SourceKind)
    source_url = models.URLField(max_length=2048, blank=True)
    page_url = models.URLField(max_length=2048, blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    source_headers = models.JSONField(default=dict, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    is_nsfw = models.BooleanField("NSFW", default=False)
    # Who last decided is_nsfw. A person's decision is final: the labeler never
    # overwrites it (see labeling.claude).
    nsfw_source = models.CharField(
        "NSFW decided by", max_length=8, choices=NsfwSource, blank=True
    )
    visibility = models.CharField(
        max_length=8, choices=Visibility, default=Visibility.PUBLIC
    )
    review_status = models.CharField(
        max_length=12, choices=ReviewStatus, default=ReviewStatus.UNREVIEWED
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = ImageQuerySet.as_manager()

    class Meta:
        indexes = [
            # Near-duplicate search loads (id, phash) pairs and exact-phash lookups.
            models.Index(fields=["phash"], name="image_phash"),
            # Anonymous image lists: newest public, safe images by keyset on id.
            models.Index(
                fields=["-id"],
                name="image_public_recent",
                condition=Q(visibility="public", is_nsfw=False),
            ),
            # Triage queue: unreviewed images newest first.
            models.Index(fields=["review_status", "-id"], name="image_review"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(width__gt=0, height__gt=0), name="image_positive_size"
            ),
        ]

    def __str__(self) -> str:
        return self.original_filename or self.sha256[:12]

    def get_absolute_url(self) -> str:
        return reverse("image-page", args=[self.pk])

    @property
    def thumbnail_url(self) -> str:
        return thumbnail_url(self.pk)

    @property
    def file_url(self) -> str:
        return f"/api/images/{self.pk}/file"

    @property
    def megapixels(self) -> float:
        return round(self.width * self.height / 1_000_000, 2)


class AlbumQuerySet(models.QuerySet):
    def visible_to(self, user: Viewer) -> AlbumQuerySet:
        if getattr(user, "is_staff", False) and user.is_active:
            return self
        return self.filter(visibility=Visibility.PUBLIC)


class Album(models.Model):
    class Kind(models.TextChoices):
        MANUAL = "manual", "Manual"
        UPLOAD = "upload", "Upload"
        SCRAPE = "scrape", "Scrape"
        GENERATED = "generated", "Generated"
        LEGACY = "legacy", "Legacy import"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=220, unique=True)
    description = models.TextField(blank=True)
    trigger_word = models.CharField(
        max_length=100,
        blank=True,
        help_text="A rare token that names this album's concept; captions written "
        "by the labeler start with it, and datasets built from the album use it.",
    )
    source_kind = models.CharField(max_length=16, choices=Kind, default=Kind.MANUAL)
    visibility = models.CharField(
        max_length=8, choices=Visibility, default=Visibility.PUBLIC
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    images = models.ManyToManyField(Image, through="AlbumImage", related_name="albums")
    # Kept by the services that change membership, an image's visibility or
    # NSFW flag, or delete images (albums.counts), so the album list and the
    # home page read them instead of counting: all members (what staff see),
    # the members a visitor sees (public and not NSFW), and each one's cover
    # (the first of them in album order).
    image_count = models.PositiveIntegerField(default=0, editable=False)
    public_image_count = models.PositiveIntegerField(default=0, editable=False)
    cover = models.ForeignKey(
        Image,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    public_cover = models.ForeignKey(
        Image,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = AlbumQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("album-page", args=[self.slug])


class AlbumImage(models.Model):
    """Membership of an image in an album, in album order."""

    album = models.ForeignKey(
        Album, on_delete=models.CASCADE, related_name="memberships"
    )
    image = models.ForeignKey(
        Image, on_delete=models.CASCADE, related_name="memberships"
    )
    position = models.PositiveBigIntegerField()
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["album", "image"], name="album_image_once"),
            # album_add_images numbers under a lock on the album; this holds
            # every writer to it.
            models.UniqueConstraint(
                fields=["album", "position"], name="album_position_once"
            ),
        ]
        indexes = [
            # Album image lists: keyset pagination over (position, id) in one album.
            models.Index(fields=["album", "position", "id"], name="album_image_order"),
        ]

    def __str__(self) -> str:
        return f"{self.album_id}#{self.position}: {self.image_id}"


class UploadRun(BaseRun):
    """Many files ingested by the worker: a bulk upload (files and zip archives
    staged in storage) or a folder import (a folder on the worker's machine,
    `manage.py import_images`)."""

    album = models.ForeignKey(
        Album,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="upload_runs",
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # [{"key": storage key of the staged file, "name": original filename}]
    staged_files = models.JSONField(default=list, blank=True)
    # A folder import reads this folder (on the worker's machine) instead.
    source_folder = models.CharField(max_length=1000, blank=True)
    # [{"filename", "status": created|duplicate|rejected, "image_id"?, "reason"?}]
    results = models.JSONField(default=list, blank=True)
    created_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)
    # What the sidecar readers recorded from files beside a folder's images
    # (captions from .txt files).
    sidecar_count = models.PositiveIntegerField(default=0)
    near_duplicates = models.CharField(
        max_length=16,
        choices=NearDuplicates,
        default=NearDuplicates.REPLACE_SMALLER,
        help_text="What to do with a file that is a near duplicate of a library image.",
    )

    task_path = "albums.tasks.process_upload_run"
    # Staged files go once the run has ended, however it ended.
    on_end_path = "albums.services.upload_run_discard"

    def __str__(self) -> str:
        kind = "Folder import" if self.source_folder else "Upload"
        return f"{kind} #{self.pk} ({self.status})"

    def retry_refusal(self) -> str:
        if self.source_folder:
            if not Path(self.source_folder).is_dir():
                return "Its folder is not there any more; import it again."
            return ""
        if self.staged_files:
            return (
                "Its uploaded files were removed when it ended; upload them again "
                "(files already added are recognised as duplicates)."
            )
        return ""


class UploadFile(models.Model):
    """One file's outcome in an UploadRun, a row written when the file is done
    (not a JSON document rewritten after every file). `position` is the file's
    place in the run, so a resumed or parallel run records each file once."""

    run = models.ForeignKey(UploadRun, on_delete=models.CASCADE, related_name="files")
    position = models.PositiveIntegerField()
    filename = models.CharField(max_length=1000)
    # created | duplicate | rejected | sidecar_alone | ... (albums.runs)
    status = models.CharField(max_length=16)
    image = models.ForeignKey(
        Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    code = models.CharField(max_length=50, blank=True)
    reason = models.CharField(max_length=1000, blank=True)
    warnings = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "position"], name="upload_file_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.filename}: {self.status}"
