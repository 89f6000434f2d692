"""Reads of set albums: each slot with its status, its chosen image and its
variants, in slot order, in a fixed number of queries however large the set."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db.models import Exists, OuterRef

from albums.models import AlbumImage, Image
from training.models import SetAlbum, SetSlot, SetVariant

if TYPE_CHECKING:
    from albums.models import Album

FILLED, MISSING, FAILED = "filled", "missing", "failed"


@dataclass
class SlotStatus:
    key: str
    label: str
    position: int
    prompt: str
    status: str
    image: Image | None
    seed: int | None
    error: str
    in_template: bool
    # Every image rendered for the slot that is still in the album, oldest first.
    variants: list[SetVariant] = field(default_factory=list)

    @property
    def image_id(self) -> int | None:
        return self.image.pk if self.image else None


def set_album_of(album: Album) -> SetAlbum | None:
    return (
        SetAlbum.objects.select_related("template", "album").filter(album=album).first()
    )


def slot_statuses(set_album: SetAlbum) -> list[SlotStatus]:
    """Every slot of the set, in slot order: `filled` while its chosen image is
    in the album, else `failed` when its last render failed, else `missing`."""
    slots = list(SetSlot.objects.filter(set_album=set_album).order_by("position", "id"))
    # Only the variants still in the album count (a set album may be a large
    # album that held other images before).
    in_album = AlbumImage.objects.filter(
        album_id=set_album.album_id, image_id=OuterRef("image_id")
    )
    variants: dict[int, list[SetVariant]] = defaultdict(list)
    for variant in (
        SetVariant.objects.filter(slot__set_album=set_album)
        .filter(Exists(in_album))
        .select_related("image")
        .order_by("id")
    ):
        variants[variant.slot_id].append(variant)
    rows = set_album.template.rows
    keys = {row["key"] for row in rows}
    statuses = [_status(slot, variants[slot.pk], keys) for slot in slots]
    # Rows added to the template since the last run have no slot yet.
    known = {slot.key for slot in slots}
    statuses += [
        SlotStatus(
            key=row["key"],
            label=row["label"],
            position=position,
            prompt="",
            status=MISSING,
            image=None,
            seed=None,
            error="",
            in_template=True,
        )
        for position, row in enumerate(rows)
        if row["key"] not in known
    ]
    return sorted(statuses, key=lambda s: (s.position, not s.in_template))


def _status(slot: SetSlot, variants: list[SetVariant], keys: set[str]) -> SlotStatus:
    chosen = next((v for v in variants if v.pk == slot.chosen_id), None)
    status = FILLED if chosen else (FAILED if slot.error else MISSING)
    return SlotStatus(
        key=slot.key,
        label=slot.label,
        position=slot.position,
        prompt=chosen.prompt if chosen else slot.prompt,
        status=status,
        image=chosen.image if chosen else None,
        seed=chosen.seed if chosen else None,
        error=slot.error if status == FAILED else "",
        in_template=slot.key in keys,
        variants=variants,
    )


def slot_counts(statuses: list[SlotStatus]) -> dict[str, int]:
    counts = {FILLED: 0, MISSING: 0, FAILED: 0}
    for slot in statuses:
        counts[slot.status] += 1
    return counts


def open_keys(set_album: SetAlbum) -> list[str]:
    """The template's slot keys not filled now, in slot order: missing or
    failed slots, and rows added to the template since the last run."""
    filled = {s.key for s in slot_statuses(set_album) if s.status == FILLED}
    return [row["key"] for row in set_album.template.rows if row["key"] not in filled]
