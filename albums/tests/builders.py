"""Builders of albums and images for every app's tests: real images through the
real ingest, with overrides as keyword arguments."""

from __future__ import annotations

import random
from typing import Any

from albums.counts import albums_recount_for_images
from albums.models import Image, SourceKind
from albums.services import album_create, image_ingest
from imagineer_project.testing import make_image_bytes


def make_album(**overrides: Any) -> Any:
    fields = {"name": "Tarot deck"} | overrides
    return album_create(**fields)


def make_image(
    *,
    album: Any = None,
    seed: int | None = None,
    fmt: str = "JPEG",
    size: tuple[int, int] = (64, 48),
    **fields: Any,
) -> Any:
    """Ingest a real generated image; then set extra fields (is_nsfw, ...)."""
    seed = random.randrange(1 << 30) if seed is None else seed
    result = image_ingest(
        data=make_image_bytes(fmt, size, seed=seed),
        filename=f"img-{seed}.{fmt.lower()}",
        source_kind=fields.pop("source_kind", SourceKind.UPLOAD),
        album=album,
    )
    assert result.image is not None, result
    if fields:
        Image.objects.filter(pk=result.image.pk).update(**fields)
        albums_recount_for_images([result.image.pk])  # as the services do
        result.image.refresh_from_db()
    return result.image
