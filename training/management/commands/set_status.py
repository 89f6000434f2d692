from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from albums.cli import album_from_arg
from albums.models import Album
from training.sets.selectors import (
    FAILED,
    SlotStatus,
    set_album_of,
    slot_counts,
    slot_statuses,
)


class Command(BaseCommand):
    help = (
        "Show the slots of the set an album holds, in slot order: each one's "
        "status (filled, missing, failed), image and seed, and why a failed one "
        "failed; then the totals."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("album", help="album name, slug or id")

    def handle(self, *args: Any, **options: Any) -> None:
        album = _album(options["album"])
        set_album = set_album_of(album)
        if set_album is None:
            raise CommandError(
                f"Album {album.name!r} holds no set; generate one into it with "
                "manage.py generate_set."
            )
        statuses = slot_statuses(set_album)
        self.stdout.write(
            f"{album.name!r}: set {set_album.template.slug!r}, theme "
            f"{set_album.theme!r}, set seed {set_album.set_seed}"
        )
        width = max((len(s.key) for s in statuses), default=0)
        for slot in statuses:
            self.stdout.write(_line(slot, width))
        counts = slot_counts(statuses)
        self.stdout.write(
            f"filled {counts['filled']}, missing {counts['missing']}, "
            f"failed {counts['failed']} of {len(statuses)}"
        )


def _album(ref: str) -> Album:
    """By id when `ref` is one, else by name or slug (a name may be digits)."""
    if ref.isdigit() and (album := Album.objects.filter(pk=int(ref)).first()):
        return album
    return album_from_arg(ref)


def _line(slot: SlotStatus, width: int) -> str:
    image = slot.image_id or "-"
    seed = "-" if slot.seed is None else slot.seed
    parts = [
        f"{slot.position + 1:>3}  {slot.key:<{width}}  {slot.status:<7}  "
        f"image {image!s:<6}  seed {seed}"
    ]
    if slot.status == FAILED:
        parts.append(f"error: {slot.error}")
    if not slot.in_template:
        parts.append("(no longer in the template)")
    return "  ".join(parts)
