"""What albums adds to the admin home (Collect and Curate) and to an
album's page (imagineer_project.workflow). Registered from AlbumsConfig.ready()."""

from __future__ import annotations

from django.db.models import Count as CountOf
from django.db.models import Q
from django.http import HttpRequest

from albums.models import Album, Image
from imagineer_project.workflow import (
    Count,
    admin_url,
    count_rows,
    register_counts,
    register_link,
    register_onward,
)

Review = Image.ReviewStatus


def collect_counts() -> list[Count]:
    albums, images = count_rows(Album.objects.all(), Image.objects.all())
    return [
        Count("albums", albums, admin_url("admin:albums_album_changelist"), "album"),
        Count("images", images, admin_url("admin:albums_image_changelist"), "image"),
    ]


def curate_counts() -> list[Count]:
    # One aggregate over the review index (image_review).
    counts = Image.objects.aggregate(
        **{
            status: CountOf("id", filter=Q(review_status=status))
            for status in Review.values
        }
    )
    changelist = admin_url("admin:albums_image_changelist")
    return [
        Count(
            label.lower(),
            counts[status],
            f"{changelist}?review_status__exact={status}",
        )
        for status, label in Review.choices
    ]


def album_upload(request: HttpRequest, album: Album) -> list[tuple[str, str]]:
    if not request.user.has_perm("albums.change_album"):
        return []
    return [("Upload images", admin_url("admin:albums_album_upload", album.pk))]


def register() -> None:
    register_counts("collect", collect_counts, permission="albums.view_album", order=10)
    register_counts("curate", curate_counts, permission="albums.view_image", order=10)
    register_link(
        "collect",
        "Upload into an album",
        "admin:albums_album_changelist",
        permission="albums.change_album",
        order=10,
    )
    register_link(
        "collect",
        "New album",
        "admin:albums_album_add",
        permission="albums.add_album",
        order=15,
    )
    # An album's links in the order of the workflow: upload 10, scrape 20,
    # label 30, review 40 (labeling's grid), train 50, generate 60.
    register_onward("albums.Album", album_upload, order=10)
