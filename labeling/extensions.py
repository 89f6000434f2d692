"""What labeling adds to albums' pages and imports (see albums.extensions):
an image's caption and labels on its page, an album's labeling coverage on its
page (staff only), and a `.txt` file beside an imported image as its caption.
Registered once, from LabelingConfig.ready()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db.models import Exists, OuterRef
from django.http import HttpRequest

from albums.extensions import PagePart, registry
from albums.models import Album, Image
from imagineer_project.permissions import is_staff
from labeling.analytics import album_labeling_analytics
from labeling.models import IMPORTED_SOURCES, Label
from labeling.selectors import NO_CAPTION, TRAINING_CAPTION_RULE, training_caption
from labeling.services import label_get_or_create


def image_labels_context(request: HttpRequest, image: Image) -> dict[str, Any]:
    # The image page's query says whether there are any labels (annotations
    # below): an image without any costs no query here.
    labelled = getattr(image, HAS_LABELS, True)
    return {
        "label_groups": labels_by_kind(image) if labelled else [],
        "training_caption": training_caption(image) if labelled else NO_CAPTION,
        "training_caption_rule": TRAINING_CAPTION_RULE,
    }


HAS_LABELS = "labeling_has_labels"


def image_labels_annotations() -> dict[str, Any]:
    return {HAS_LABELS: Exists(Label.objects.filter(image=OuterRef("pk")))}


def album_coverage_context(request: HttpRequest, album: Album) -> dict[str, Any] | None:
    # Staff only: the counts and tags cover private and NSFW images too.
    if not is_staff(request):
        return None
    return {"analytics": album_labeling_analytics(album=album)}


def labels_by_kind(image: Image) -> list[tuple[str, list[Label]]]:
    groups: dict[str, list[Label]] = {kind: [] for kind in Label.Kind.values}
    for label in image.labels.order_by("kind", "id"):
        groups.setdefault(label.kind, []).append(label)
    return [
        (Label.Kind(kind).label if kind in Label.Kind.values else kind, labels)
        for kind, labels in groups.items()
        if labels
    ]


def caption_sidecar(image: Image, path: Path) -> int:
    """A `.txt` file beside an imported image (same stem) is its caption, with
    source "sidecar"; the same text is recorded once however often the folder is
    imported. Returns 1 when a caption was added."""
    sidecar = path.with_suffix(".txt")
    if not sidecar.is_file():
        return 0
    text = sidecar.read_text(encoding="utf-8", errors="replace").strip()
    if not text:
        return 0
    _, created = label_get_or_create(
        image=image, kind=Label.Kind.CAPTION, text=text, source=Label.Source.SIDECAR
    )
    return int(created)


def labels_to_larger_copy(smaller: Image, larger: Image) -> None:
    """A larger near duplicate replaces `smaller` (albums.services
    near_duplicate_replace): its labels describe the same picture, so they move
    to `larger`, whoever wrote them; an imported text the larger copy already
    has is not repeated (it goes with the smaller copy)."""
    for label in smaller.labels.all():
        twin = (
            label.source in IMPORTED_SOURCES
            and larger.labels.filter(
                kind=label.kind, source=label.source, text_sha256=label.text_sha256
            ).exists()
        )
        if not twin:
            Label.objects.filter(pk=label.pk).update(image=larger)


def register() -> None:
    registry.add_image_page_part(
        PagePart(
            "labels",
            "labeling/_image_labels.html",
            image_labels_context,
            10,
            annotations=image_labels_annotations,
        )
    )
    registry.add_album_page_part(
        PagePart("coverage", "labeling/_coverage.html", album_coverage_context, 10)
    )
    registry.add_sidecar_reader("caption", caption_sidecar)
    registry.add_image_replacer("labels", labels_to_larger_copy)
