"""Writes for labels."""

from __future__ import annotations

from typing import Any

from albums.models import Image
from labeling.models import Label


def label_create(
    *,
    image: Image,
    kind: str,
    text: str,
    source: str = Label.Source.HUMAN,
    author: Any = None,
    **extra: Any,
) -> Label:
    text = text.strip()
    if not text:
        raise ValueError("A label needs text.")
    return Label.objects.create(
        image=image,
        kind=kind,
        text=text,
        source=source,
        author=author if getattr(author, "pk", None) else None,
        **extra,
    )


def label_get_or_create(
    *, image: Image, kind: str, text: str, source: str, **extra: Any
) -> tuple[Label, bool]:
    """Idempotent label write: the same text of the same kind and source once."""
    return Label.objects.get_or_create(
        image=image, kind=kind, source=source, text=text.strip(), defaults=extra
    )
