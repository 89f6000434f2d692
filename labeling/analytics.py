"""Label analytics: counts, top tags, distributions and an album's coverage.

Every read aggregates in the database (GROUP BY, conditional counts, correlated
subqueries) and costs a fixed handful of queries whatever the library's size.
Grouping is always by small numbers (labels per image, words per caption), so
the rows that come back are few; Python only folds them into buckets.

Text comparisons are trimmed and case-folded in SQL. SQLite's LOWER folds only
ASCII letters, PostgreSQL's the whole alphabet: "Éclair" and "éclair" are one tag
on PostgreSQL and two on SQLite.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import Combinable
from django.db.models.functions import (
    Coalesce,
    Least,
    Length,
    Lower,
    Replace,
    Trim,
    Upper,
)
from django.db.models.lookups import GreaterThan
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from albums.models import Album, Image
from labeling.models import Label
from labeling.selectors import (
    CAPTION_KINDS,
    HTML_CAPTION_KINDS,
    PERSON_SOURCES,
    caption_candidates,
    captioned_q,
)

logger = logging.getLogger(__name__)

Kind, Source, Review = Label.Kind, Label.Source, Label.Review

# The labeler's closed set of ratings (labeling.claude), mildest first.
NSFW_RATINGS = ("SAFE", "SUGGESTIVE", "ADULT", "EXPLICIT")
# Per-image histograms stop here; the last bucket is "10+".
COUNT_BUCKETS = 10
# Caption length in words. SD's CLIP text encoder reads 77 tokens, so "78+"
# captions are certainly cut off (a word is at least one token).
WORD_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 0),
    ("1-10", 1, 10),
    ("11-20", 11, 20),
    ("21-40", 21, 40),
    ("41-77", 41, 77),
    ("78+", 78, None),
)
ALBUM_TOP_TAGS = 10


def min_captioned_for_training() -> int:
    return settings.TRAINING_MIN_CAPTIONED


# --- scope ------------------------------------------------------------------------


def _images(album: Album | None) -> QuerySet[Image]:
    images = Image.objects.order_by()
    return images if album is None else images.filter(memberships__album=album)


def _labels(album: Album | None) -> QuerySet[Label]:
    labels = Label.objects.order_by()
    if album is None:
        return labels
    return labels.filter(image__memberships__album=album)


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


# --- SQL expressions --------------------------------------------------------------


def _normalized(field: str = "text") -> Combinable:
    """Trimmed, lower-case text: how tags and texts are compared."""
    return Lower(Trim(field))


def _word_count(field: str = "text") -> Case:
    """Words in a text, as str.split() would count them for ordinary text:
    newlines and tabs count as spaces; runs of up to 16 spaces count as one."""
    text: Any = F(field)
    for char in ("\n", "\r", "\t"):
        text = Replace(text, Value(char), Value(" "))
    for _ in range(4):  # each pass halves a run of spaces
        text = Replace(text, Value("  "), Value(" "))
    text = Trim(text)
    spaces = Length(text) - Length(Replace(text, Value(" "), Value("")))
    return Case(
        When(GreaterThan(Length(text), 0), then=spaces + 1),
        default=0,
        output_field=IntegerField(),
    )


def _caption_rank() -> tuple[Case, Case]:
    """labeling.selectors._rank as SQL: (tier, order within the tier); with
    newest first, then id, the first row is the caption the rule picks. A test
    holds the two to the same answers."""
    caption = Q(kind=Kind.CAPTION) & ~Q(source=Source.HTML)
    approved = Q(review=Review.APPROVED)
    tier = Case(
        When(caption & Q(source__in=PERSON_SOURCES) & approved, then=0),
        When(caption & Q(source=Source.CLAUDE), then=1),
        When(caption, then=2),
        default=3,
        output_field=IntegerField(),
    )
    order = Case(
        When(caption & Q(source=Source.CLAUDE) & ~approved, then=1),
        When(kind=Kind.CAPTION, then=0),
        *(
            When(kind=kind, then=n)
            for n, kind in enumerate(HTML_CAPTION_KINDS, start=1)
        ),
        default=9,
        output_field=IntegerField(),
    )
    return tier, order


def _count_per_image(labels: QuerySet[Label]) -> Coalesce:
    """How many of `labels` each outer image has (0 when none). A seek on the
    label_image_kind index per image."""
    per_image = (
        labels.filter(image=OuterRef("pk"))
        .order_by()
        .values("image")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(per_image), 0)


def _training_caption_words() -> Coalesce:
    """Words in each outer image's training caption (0 when it has none)."""
    tier, order = _caption_rank()
    chosen = (
        caption_candidates()
        .filter(image=OuterRef("pk"))
        .annotate(words=_word_count(), tier=tier, order=order)
        .filter(words__gt=0)  # the rule skips blank text
        .order_by("tier", "order", "-created", "id")
        .values("words")[:1]
    )
    return Coalesce(Subquery(chosen), 0)


def _newest_rating() -> Subquery:
    """Each outer image's newest NSFW rating, upper-cased (NULL when none); the
    label_image_kind index finds an image's few nsfw labels."""
    return Subquery(
        Label.objects.filter(image=OuterRef("pk"), kind=Kind.NSFW)
        .annotate(rating=Upper(Trim("text")))
        .order_by("-created", "-id")
        .values("rating")[:1]
    )


def _histogram(images: QuerySet[Image], value: Any) -> Counter[Any]:
    """{value: number of images} in one GROUP BY query."""
    rows = images.annotate(value=value).values("value").annotate(n=Count("id"))
    return Counter({row["value"]: row["n"] for row in rows})


# --- stats ------------------------------------------------------------------------


def label_stats(*, album: Album | None = None) -> dict[str, Any]:
    """Totals for all labels, or an album's: two queries."""
    by_kind = {f"kind_{k}": Count("id", filter=Q(kind=k)) for k in Kind.values}
    by_source = {f"source_{s}": Count("id", filter=Q(source=s)) for s in Source.values}
    totals = _labels(album).aggregate(
        total_labels=Count("id"),
        unique_texts=Count(_normalized(), distinct=True),
        images_labeled=Count("image", distinct=True),
        **by_kind,
        **by_source,
    )
    labeled = totals["images_labeled"]
    return {
        "total_labels": totals["total_labels"],
        "unique_texts": totals["unique_texts"],
        "images_labeled": labeled,
        "total_images": _images(album).count(),
        "labels_per_image": round(totals["total_labels"] / labeled, 2)
        if labeled
        else 0.0,
        "by_kind": {k: totals[f"kind_{k}"] for k in Kind.values},
        "by_source": {s: totals[f"source_{s}"] for s in Source.values},
    }


# --- tags -------------------------------------------------------------------------


def _tag_items(tags: QuerySet[Label], scope_images: int, limit: int) -> list[dict]:
    """The `limit` tags on the most images, each in its most common spelling:
    two queries (the counts, then the spellings of those tags only)."""
    tags = tags.annotate(norm=_normalized()).exclude(norm="")
    top = list(
        tags.values("norm")
        .annotate(count=Count("image", distinct=True))
        .order_by("-count", "norm")[:limit]
    )
    spellings: dict[str, list[tuple[int, str]]] = {}
    rows = (
        tags.filter(norm__in=[row["norm"] for row in top])
        .annotate(spelling=Trim("text"))
        .values_list("norm", "spelling")
        .annotate(n=Count("id"))
    )
    for norm, spelling, n in rows:
        spellings.setdefault(norm, []).append((-n, spelling))
    # Sorted here, not by the database: collations order "Moon"/"moon" differently.
    top.sort(key=lambda row: (-row["count"], row["norm"]))
    return [
        {
            "tag": min(spellings[row["norm"]])[1],
            "count": row["count"],
            "percent": _percent(row["count"], scope_images),
        }
        for row in top
    ]


def top_tags(
    *, album: Album | None = None, limit: int = 20, source: str | None = None
) -> dict[str, Any]:
    """The most common tags by the number of images carrying them: three queries."""
    tags = _labels(album).filter(kind=Kind.TAG)
    if source:
        tags = tags.filter(source=source)
    scope_images = _images(album).count()
    return {
        "scope_images": scope_images,
        "items": _tag_items(tags, scope_images, limit),
    }


# --- distribution -----------------------------------------------------------------


def _count_buckets(counts: Counter[int], key: str) -> list[dict[str, Any]]:
    """[{key: 0, images: n}, ..., {key: "10+", images: n}]."""
    buckets: list[dict[str, Any]] = [
        {key: n, "images": counts[n]} for n in range(COUNT_BUCKETS)
    ]
    buckets.append({key: f"{COUNT_BUCKETS}+", "images": counts[COUNT_BUCKETS]})
    return buckets


def _word_buckets(counts: Counter[int]) -> list[dict[str, Any]]:
    def images_between(low: int, high: int | None) -> int:
        return sum(
            n
            for words, n in counts.items()
            if words >= low and (high is None or words <= high)
        )

    return [
        {"words": name, "images": images_between(low, high)}
        for name, low, high in WORD_BUCKETS
    ]


def _by_album(album: Album | None) -> list[dict[str, Any]]:
    """Images, labeled images and labels per album, most labels first."""
    albums = Album.objects.all() if album is None else Album.objects.filter(pk=album.pk)
    # image_count is the album's stored count (albums.counts).
    rows = albums.annotate(
        labeled_count=Count(
            "memberships",
            filter=Q(memberships__image__labels__isnull=False),
            distinct=True,
        ),
        label_count=Count("memberships__image__labels"),
    ).order_by("-label_count", "id")
    return [
        {
            "album_id": row.pk,
            "album_slug": row.slug,
            "album_name": row.name,
            "images": row.image_count,
            "labeled_images": row.labeled_count,
            "labels": row.label_count,
        }
        for row in rows.only("id", "slug", "name", "image_count")
    ]


def label_distribution(*, album: Album | None = None) -> dict[str, Any]:
    """How labels spread over images: five GROUP BY queries, each returning at
    most a few dozen rows (one per distinct count)."""
    images = _images(album)
    cap = Value(COUNT_BUCKETS)
    labels = _histogram(images, Least(_count_per_image(Label.objects.all()), cap))
    tags = _histogram(
        images, Least(_count_per_image(Label.objects.filter(kind=Kind.TAG)), cap)
    )
    words = _histogram(images, _training_caption_words())
    ratings = _histogram(images, _newest_rating())
    return {
        "labels_per_image": _count_buckets(labels, "labels"),
        "tags_per_image": _count_buckets(tags, "tags"),
        "caption_length_words": _word_buckets(words),
        "nsfw_ratings": {rating: ratings[rating] for rating in NSFW_RATINGS},
        "by_album": _by_album(album),
    }


# --- one album --------------------------------------------------------------------


def album_labeling_analytics(*, album: Album) -> dict[str, Any]:
    """An album's labeling coverage and readiness for training: four queries."""
    captions = Label.objects.filter(image=OuterRef("pk"), kind__in=CAPTION_KINDS)

    def having(labels: QuerySet[Label]) -> Count:
        return Count("id", filter=Q(Exists(labels)))

    counts = _images(album).aggregate(
        total_images=Count("id"),
        captioned=Count("id", filter=captioned_q()),
        unlabeled=Count(
            "id", filter=~Q(Exists(Label.objects.filter(image=OuterRef("pk"))))
        ),
        reviewed=having(captions.exclude(review=Review.UNREVIEWED)),
        approved=having(captions.filter(review=Review.APPROVED)),
        rejected=having(captions.filter(review=Review.REJECTED)),
    )
    last: datetime | None = _labels(album).aggregate(last=Max("created"))["last"]
    tags = _labels(album).filter(kind=Kind.TAG)
    minimum = min_captioned_for_training()
    return {
        "album_id": album.pk,
        "album_slug": album.slug,
        **counts,
        "coverage_percent": _percent(counts["captioned"], counts["total_images"]),
        "top_tags": _tag_items(tags, counts["total_images"], ALBUM_TOP_TAGS),
        "last_labeled_at": last,
        "ready_for_training": counts["captioned"] >= minimum,
        "min_captioned_for_training": minimum,
    }


def render_album_coverage(album: Album) -> SafeString:
    """The album's labeling panel as HTML, for the album page and its admin."""
    context = {"album": album, "analytics": album_labeling_analytics(album=album)}
    return render_to_string("labeling/_coverage.html", context)
