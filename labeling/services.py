"""Writes for labels (a person's edits, and the labeler's results) and the start
of a labeling job.

Two kinds of writer touch labels and neither may undo the other: a person (API,
admin, find/replace) and Claude (labeling jobs). Claude only ever replaces its
own labels; a person's edit of a Claude label makes it a person's label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from albums.counts import albums_recount_for_images
from albums.models import Album, Image, NsfwSource
from albums.services import images_set
from imagineer_project.errors import Invalid
from imagineer_project.permissions import person
from imagineer_project.ratelimit import rate_limit_take
from imagineer_project.runs import run_enqueue
from labeling import claude
from labeling.claude import LabelResult, rating_is_nsfw
from labeling.models import IMPORTED_SOURCES, Label, LabelingJob, text_digest

if TYPE_CHECKING:
    from django.contrib.auth.models import User

Kind, Source, Review = Label.Kind, Label.Source, Label.Review

MAX_TAG_CHARS = 200  # tags are indexed (labeling.models: label_tag_text)


def _clean_text(kind: str, text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise Invalid("A label needs text.")
    if kind == Kind.TAG:
        text = " ".join(text.split())
        if len(text) > MAX_TAG_CHARS:
            raise Invalid(f"A tag is at most {MAX_TAG_CHARS} characters.")
    return text


def label_create(
    *,
    image: Image,
    kind: str,
    text: str,
    source: str = Source.HUMAN,
    author: User | None = None,
    **extra: Any,
) -> Label:
    """One label. A caption a person writes counts as approved unless told
    otherwise: writing it is the review."""
    if source == Source.HUMAN and kind == Kind.CAPTION:
        extra.setdefault("review", Review.APPROVED)
    return Label.objects.create(
        image=image,
        kind=kind,
        text=_clean_text(kind, text),
        source=source,
        author=person(author),
        **extra,
    )


def label_get_or_create(
    *, image: Image, kind: str, text: str, source: str, **extra: Any
) -> tuple[Label, bool]:
    """Idempotent write of an imported label (source html, sidecar or legacy):
    the same text of the same kind and source once per image, held by the
    label_imported_once constraint (get_or_create retries on its conflict)."""
    if source not in IMPORTED_SOURCES:
        raise Invalid(f"Only imported labels are written this way, not {source!r}.")
    text = text.strip()
    return Label.objects.get_or_create(
        image=image,
        kind=kind,
        source=source,
        text_sha256=text_digest(text),
        defaults={"text": text, **extra},
    )


def labels_import(labels: Iterable[tuple[Image, str, str]], *, source: str) -> None:
    """label_get_or_create for many (image, kind, text) at once: one INSERT,
    leaving out every label an image already has (or that the list repeats),
    by the same label_imported_once constraint. For a batch of downloads."""
    if source not in IMPORTED_SOURCES:
        raise Invalid(f"Only imported labels are written this way, not {source!r}.")
    rows = []
    for image, kind, text in labels:
        label = Label(image=image, kind=kind, source=source, text=text.strip())
        label.fill_digest()
        rows.append(label)
    Label.objects.bulk_create(rows, ignore_conflicts=True)


def label_update(
    *,
    label: Label,
    user: User | None,
    text: str | None = None,
    kind: str | None = None,
    review: str | None = None,
) -> Label:
    """A person edits a label. New text makes it theirs (source human, their
    name as author), so a forced re-label by Claude never overwrites it."""
    changed: list[str] = []
    if kind is not None and kind != label.kind:
        label.kind = kind
        changed.append("kind")
    if text is not None and text.strip() != label.text:
        label.text = _clean_text(label.kind, text)
        label.source = Source.HUMAN
        label.author = person(user)
        changed += ["text", "source", "author"]
        if label.kind == Kind.CAPTION and review is None:
            review = Review.APPROVED
    if review is not None and review != label.review:
        label.review = review
        changed.append("review")
    if changed:
        label.save(update_fields=[*dict.fromkeys(changed), "updated"])
    return label


def label_delete(*, label: Label) -> None:
    label.delete()


def labels_set_review(*, label_ids: Iterable[int], review: str) -> int:
    return Label.objects.filter(pk__in=list(label_ids)).update(
        review=review, updated=timezone.now()
    )


def captions_find_replace(
    *,
    image_ids: Iterable[int],
    find: str,
    replace: str,
    user: User | None,
    case_sensitive: bool = False,
) -> int:
    """Replace text in the captions of the given images; returns captions changed.

    An edited caption becomes the editing person's (label_update), so the fix
    survives a forced re-label.
    """
    if not find:
        raise Invalid("Say what to find.")
    pattern = re.compile(re.escape(find), 0 if case_sensitive else re.IGNORECASE)
    changed = 0
    captions = Label.objects.filter(
        image_id__in=list(image_ids), kind=Kind.CAPTION
    ).exclude(review=Review.REJECTED)
    with transaction.atomic():
        for label in captions.select_for_update():
            new_text = " ".join(pattern.sub(replace, label.text).split())
            if new_text and new_text != label.text:
                label_update(label=label, user=user, text=new_text)
                changed += 1
    return changed


def labels_write_from_claude(
    *,
    image: Image,
    result: LabelResult,
    kind: str,
    model_name: str,
    prompt_version: str,
) -> list[Label]:
    """Replace Claude's own caption (or description), tags and rating on `image`
    with `result`. People's labels are never touched; a tag a person already
    gave is not repeated; a person's NSFW decision stands."""
    common = {
        "image": image,
        "source": Source.CLAUDE,
        "model_name": model_name[:100],
        "prompt_version": prompt_version,
        "confidence": result.confidence,
    }
    with transaction.atomic():
        Label.objects.filter(
            image=image, source=Source.CLAUDE, kind__in=(kind, Kind.TAG, Kind.NSFW)
        ).delete()
        person_tags = {
            text.casefold()
            for text in Label.objects.filter(image=image, kind=Kind.TAG).values_list(
                "text", flat=True
            )
        }
        labels = [Label(kind=kind, text=result.caption, **common)]
        labels += [
            Label(kind=Kind.TAG, text=tag, **common)
            for tag in result.tags
            if tag.casefold() not in person_tags
        ]
        labels.append(Label(kind=Kind.NSFW, text=result.nsfw_rating, **common))
        for label in labels:
            label.fill_digest()
        created = Label.objects.bulk_create(labels)
        # Conditional updates: a person's decision made meanwhile still wins.
        # Only a flag that flips changes the albums' stored public counts:
        # recounting on every label made labeling a big album quadratic.
        is_nsfw = rating_is_nsfw(result.nsfw_rating)
        rated = Image.objects.filter(pk=image.pk).exclude(nsfw_source=NsfwSource.HUMAN)
        changes = {"nsfw_source": NsfwSource.MODEL, "updated": timezone.now()}
        if rated.exclude(is_nsfw=is_nsfw).update(is_nsfw=is_nsfw, **changes):
            albums_recount_for_images([image.pk])
        else:
            rated.update(**changes)
    return created


def image_caption_set(
    *, image: Image, text: str, user: User | None, review: str | None = None
) -> Label | None:
    """Make `text` the caption `image` trains with, as the person's edit; or, with
    the same text, just set its review state. Empty text changes nothing."""
    from labeling.selectors import training_caption

    choice = training_caption(image)
    current = Label.objects.filter(pk=choice.label_id).first()
    text = (text or "").strip()
    if text and text != choice.text:
        if current and current.kind == Kind.CAPTION and current.source == Source.HUMAN:
            return label_update(label=current, user=user, text=text, review=review)
        return label_create(
            image=image,
            kind=Kind.CAPTION,
            text=text,
            author=user,
            review=review or Review.APPROVED,
        )
    if current is not None and review:
        return label_update(label=current, user=user, review=review)
    return current


def image_tags_set(
    *, image: Image, tags: Iterable[str], user: User | None
) -> tuple[int, int]:
    """Make the image's tags exactly `tags` (compared case-insensitively): drop the
    missing ones, whoever wrote them, and add the new ones as the person's.
    Returns (added, removed)."""
    wanted = {" ".join(t.split()).casefold(): " ".join(t.split()) for t in tags}
    wanted.pop("", None)
    existing = list(Label.objects.filter(image=image, kind=Kind.TAG))
    have = {label.text.casefold() for label in existing}
    gone = [label.pk for label in existing if label.text.casefold() not in wanted]
    with transaction.atomic():
        Label.objects.filter(pk__in=gone).delete()
        for key, tag in wanted.items():
            if key not in have:
                label_create(image=image, kind=Kind.TAG, text=tag, author=user)
    return len([k for k in wanted if k not in have]), len(gone)


# --- labeling jobs ----------------------------------------------------------------


def labeling_job_create(
    *,
    album: Album | None = None,
    images: list[Image] | None = None,
    style: str = LabelingJob.Style.TRAINING,
    force: bool = False,
    budget_usd: Decimal | float | None = None,
    limit: int | None = None,
    use_batch: bool = False,
    created_by: User | None = None,
    enqueue: bool = True,
    rate_limited: bool = False,
) -> LabelingJob:
    """Queue Claude labeling of an album or of chosen images.

    Raises LabelingNotConfigured (no API key) before anything is queued, and
    Invalid for a request that names nothing to label; with `rate_limited`
    (the API and the admin), RateLimitExceeded past the `label` rate limit.
    """
    claude.require_configured()
    if style not in LabelingJob.Style.values:
        raise Invalid(f"Unknown style {style!r}: use training or description.")
    if album is None and not images:
        raise Invalid("Name an album or at least one image to label.")
    if budget_usd is not None and Decimal(str(budget_usd)) <= 0:
        raise Invalid("A budget must be more than 0.")
    if budget_usd is not None and use_batch:
        raise Invalid(
            "A budget needs direct requests: a Message Batch is priced only once "
            "it has ended. Use one or the other."
        )
    if rate_limited:
        rate_limit_take("label", user=created_by)
    with transaction.atomic():
        job = LabelingJob.objects.create(
            album=album,
            image_ids=[im.pk for im in images or []],
            style=style,
            force=force,
            budget_usd=None if budget_usd is None else Decimal(str(budget_usd)),
            limit=limit,
            use_batch=use_batch,
            model_name=settings.LABELING_MODEL,
            prompt_version=claude.prompt_version(style),
            created_by=person(created_by),
        )
        if enqueue:
            run_enqueue(job)
    return job


# --- the one review state ---------------------------------------------------------


def images_review_set(*, image_ids: Iterable[int], review: str) -> int:
    """Set the one Review state people see on the grid, changelist and image
    page. Returns the number of images changed.

    An image has two review fields underneath: its own `review_status` and
    the `review` of the caption it trains with. The one state is the image's:

    - approve: the image is approved AND its current training caption
      (labeling.selectors.training_caption) is approved, so an approved image
      trains with the caption the person saw;
    - reject: the image is rejected, which keeps it out of every dataset; its
      captions are left as they are (un-rejecting brings them back);
    - unreviewed: the image goes back to the queue; captions are untouched.
    """
    from labeling.selectors import training_captions

    if review not in Image.ReviewStatus.values:
        raise Invalid(f"Unknown review state {review!r}.")
    ids = list(image_ids)
    with transaction.atomic():
        count = images_set(image_ids=ids, review_status=review)
        if review == Image.ReviewStatus.APPROVED:
            chosen = training_captions(ids).values()
            labels_set_review(
                label_ids=[c.label_id for c in chosen if c.label_id],
                review=Review.APPROVED,
            )
    return count
