"""The review grid's reads: one page of cards, in a constant number of queries
whatever the page size (the images, their caption candidates, their tags)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from albums.models import Image
from labeling.models import Label
from labeling.selectors import training_captions

# The edge of the box a card's thumbnail fits in; the 512 px thumbnail keeps it
# sharp on high-density screens.
CARD_EDGE = 240
THUMBNAIL_SIZE = 512


@dataclass(frozen=True)
class ReviewCard:
    """What one card shows and what the keys change."""

    id: int
    name: str
    width: int
    height: int
    box_width: int
    box_height: int
    is_nsfw: bool
    review: str
    caption: str
    caption_reason: str
    tags: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "is_nsfw": self.is_nsfw,
            "review": self.review,
            "caption": self.caption,
            "caption_reason": self.caption_reason,
            "tags": list(self.tags),
        }


def fit_box(width: int, height: int, edge: int) -> tuple[int, int]:
    """(width, height) scaled to fit an edge×edge box, keeping the aspect ratio:
    the page reserves each thumbnail's space before it loads."""
    scale = edge / max(width, height, 1)
    return max(1, round(width * scale)), max(1, round(height * scale))


def tags_by_image(image_ids: Iterable[int]) -> dict[int, list[str]]:
    """Every image's tags, oldest first, in one query per 500 ids."""
    ids = list(image_ids)
    tags: dict[int, list[str]] = defaultdict(list)
    for start in range(0, len(ids), 500):  # SQLite's variable limit
        rows = Label.objects.filter(
            image_id__in=ids[start : start + 500], kind=Label.Kind.TAG
        ).order_by("image_id", "id")
        for image_id, text in rows.values_list("image_id", "text"):
            tags[image_id].append(text)
    return tags


def review_cards(images: Iterable[Image]) -> list[ReviewCard]:
    """Cards for `images` (already fetched, in page order): two more queries."""
    images = list(images)
    ids = [image.pk for image in images]
    captions = training_captions(ids)
    tags = tags_by_image(ids)
    cards = []
    for image in images:
        box = fit_box(image.width, image.height, CARD_EDGE)
        cards.append(
            ReviewCard(
                id=image.pk,
                name=str(image),
                width=image.width,
                height=image.height,
                box_width=box[0],
                box_height=box[1],
                is_nsfw=image.is_nsfw,
                review=image.review_status,
                caption=captions[image.pk].text,
                caption_reason=captions[image.pk].reason,
                tags=tuple(tags.get(image.pk, ())),
            )
        )
    return cards


def review_cards_for(image_ids: Iterable[int]) -> list[ReviewCard]:
    """Fresh cards for the given ids (after a key press changed them)."""
    ids = list(image_ids)
    images = Image.objects.filter(pk__in=ids).only(*CARD_FIELDS)
    by_id = {image.pk: image for image in images}
    return review_cards(by_id[pk] for pk in ids if pk in by_id)


CARD_FIELDS = (
    "id",
    "original_filename",
    "sha256",
    "width",
    "height",
    "is_nsfw",
    "review_status",
)
