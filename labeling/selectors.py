"""Reads for labels, above all the one rule that decides which caption trains."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q, QuerySet

from albums.models import Image
from labeling.models import Label

Kind, Source, Review = Label.Kind, Label.Source, Label.Review

# Sources whose text a person wrote (or chose): typed here, a sidecar .txt, an
# old system's export.
PERSON_SOURCES = (Source.HUMAN, Source.SIDECAR, Source.LEGACY)
# Text an HTML page gave the image, best first.
HTML_CAPTION_KINDS = (Kind.FIGCAPTION, Kind.ALT_TEXT, Kind.TITLE)
CAPTION_KINDS = (Kind.CAPTION, *HTML_CAPTION_KINDS)

TRAINING_CAPTION_RULE = (
    "An approved caption written by a person, else the newest caption from "
    "Claude, else an imported caption not yet reviewed, else the page's own "
    "caption, figcaption, alt text or title. Rejected captions never train."
)


@dataclass(frozen=True)
class CaptionChoice:
    """The caption an image trains with, and which step of the rule chose it."""

    text: str
    label_id: int | None
    reason: str

    def __bool__(self) -> bool:
        return bool(self.text)


NO_CAPTION = CaptionChoice("", None, "no caption")


def _rank(label: Label) -> tuple[int, int, float]:
    """Smaller is better: (tier, kind order within HTML, newest first)."""
    newest = -label.created.timestamp()
    if label.kind == Kind.CAPTION and label.source != Source.HTML:
        if label.source in PERSON_SOURCES and label.review == Review.APPROVED:
            return (0, 0, newest)
        if label.source == Source.CLAUDE:
            return (1, 0 if label.review == Review.APPROVED else 1, newest)
        return (2, 0, newest)
    # From the page: a structured-data caption, then figcaption, alt, title.
    order = -1 if label.kind == Kind.CAPTION else HTML_CAPTION_KINDS.index(label.kind)
    return (3, order, newest)


_REASONS = {
    0: "approved caption by a person",
    1: "newest caption from Claude",
    2: "imported caption (not yet reviewed)",
    3: "caption from the page",
}


def _choose(labels: Iterable[Label]) -> CaptionChoice:
    candidates = [lb for lb in labels if lb.text.strip()]
    if not candidates:
        return NO_CAPTION
    best = min(candidates, key=_rank)
    reason = _REASONS[_rank(best)[0]]
    if _rank(best)[0] == 3:
        reason = f"{reason} ({best.get_kind_display().lower()})"
    return CaptionChoice(best.text.strip(), best.pk, reason)


def caption_candidates() -> QuerySet[Label]:
    return Label.objects.filter(kind__in=CAPTION_KINDS).exclude(review=Review.REJECTED)


def training_caption(image: Image) -> CaptionChoice:
    """The caption `image` trains with (see TRAINING_CAPTION_RULE)."""
    return _choose(caption_candidates().filter(image=image))


def training_captions(image_ids: Iterable[int]) -> dict[int, CaptionChoice]:
    """training_caption for many images in a few queries; every id gets an entry."""
    ids = list(image_ids)
    chosen: dict[int, list[Label]] = {pk: [] for pk in ids}
    for start in range(0, len(ids), 500):  # SQLite's variable limit
        chunk = ids[start : start + 500]
        labels = caption_candidates().filter(image_id__in=chunk)
        for label in labels.only(
            "id", "image_id", "kind", "text", "source", "review", "created"
        ):
            chosen[label.image_id].append(label)
    return {pk: _choose(labels) for pk, labels in chosen.items()}


def captioned_q() -> Q:
    """Images with a caption the rule can pick (for counts and readiness)."""
    return Q(Exists(caption_candidates().filter(image=OuterRef("pk"))))


def labels_for_image(image: Image) -> QuerySet[Label]:
    """An image's labels, captions first, as the editor shows them."""
    return image.labels.select_related("author").order_by("kind", "-created", "id")
