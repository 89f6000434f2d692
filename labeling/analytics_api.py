"""JSON API for label analytics (/api/labels/stats, /api/labels/top-tags,
/api/labels/distribution, /api/albums/{ref}/labeling/analytics). Staff only:
tag counts would reveal what hidden and NSFW images show."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from albums.models import Album
from albums.selectors import album_get
from imagineer_project.errors import error_responses
from imagineer_project.permissions import staff_required
from labeling import analytics
from labeling.models import Label

labels_router = Router(tags=["label analytics"], auth=staff_required)
albums_router = Router(tags=["label analytics"], auth=staff_required)


def _album_ref() -> Any:
    return Field(None, max_length=220, description="Album id or slug")


class AlbumScopeIn(Schema):
    album: str | None = _album_ref()


class TopTagsIn(Schema):
    album: str | None = _album_ref()
    limit: int = Field(20, ge=1, le=200)
    source: Label.Source | None = None


class LabelStatsOut(Schema):
    total_labels: int
    unique_texts: int
    images_labeled: int
    total_images: int
    labels_per_image: float
    by_kind: dict[str, int]
    by_source: dict[str, int]


class TagCountOut(Schema):
    tag: str
    count: int
    percent: float


class TopTagsOut(Schema):
    scope_images: int
    items: list[TagCountOut]


class LabelsBucketOut(Schema):
    labels: int | str
    images: int


class TagsBucketOut(Schema):
    tags: int | str
    images: int


class WordsBucketOut(Schema):
    words: str
    images: int


class AlbumLabelCountsOut(Schema):
    album_id: int
    album_slug: str
    album_name: str
    images: int
    labeled_images: int
    labels: int


class LabelDistributionOut(Schema):
    labels_per_image: list[LabelsBucketOut]
    tags_per_image: list[TagsBucketOut]
    caption_length_words: list[WordsBucketOut]
    nsfw_ratings: dict[str, int]
    by_album: list[AlbumLabelCountsOut]


class AlbumLabelingOut(Schema):
    album_id: int
    album_slug: str
    total_images: int
    captioned: int
    unlabeled: int
    coverage_percent: float
    reviewed: int
    approved: int
    rejected: int
    top_tags: list[TagCountOut]
    last_labeled_at: datetime | None
    ready_for_training: bool
    min_captioned_for_training: int


def _scope(request: HttpRequest, ref: str | None) -> Album | None:
    return album_get(user=request.user, ref=ref) if ref else None


@labels_router.get("/stats", response=LabelStatsOut)
@error_responses(404)
def label_stats(request: HttpRequest, scope: Query[AlbumScopeIn]) -> Any:
    """Label totals, per kind and per source; `album` scopes them to one album."""
    return analytics.label_stats(album=_scope(request, scope.album))


@labels_router.get("/top-tags", response=TopTagsOut)
@error_responses(404)
def top_tags(request: HttpRequest, filters: Query[TopTagsIn]) -> Any:
    """Tags by the number of images carrying them (trimmed, case-insensitive)."""
    return analytics.top_tags(
        album=_scope(request, filters.album),
        limit=filters.limit,
        source=filters.source,
    )


@labels_router.get("/distribution", response=LabelDistributionOut)
@error_responses(404)
def label_distribution(request: HttpRequest, scope: Query[AlbumScopeIn]) -> Any:
    """Histograms of labels, tags and caption words per image; NSFW ratings."""
    return analytics.label_distribution(album=_scope(request, scope.album))


@albums_router.get("/{album_ref}/labeling/analytics", response=AlbumLabelingOut)
def album_labeling_analytics(request: HttpRequest, album_ref: str) -> Any:
    """An album's caption coverage, reviews, top tags and training readiness."""
    album = album_get(user=request.user, ref=album_ref)
    return analytics.album_labeling_analytics(album=album)
