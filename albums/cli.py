"""Helpers for management commands that take albums by name."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db.models import Q

from albums.models import Album


def album_from_arg(ref: str) -> Album:
    """The album a command-line `--album` names: its exact name or its slug.
    A clear CommandError when none matches, or several do."""
    albums = list(Album.objects.filter(Q(name=ref) | Q(slug=ref)).order_by("id"))
    if not albums:
        raise CommandError(f"No album named {ref!r}.")
    if len(albums) > 1:
        slugs = ", ".join(a.slug for a in albums)
        raise CommandError(f"Several albums match {ref!r}; use a slug: {slugs}")
    return albums[0]
