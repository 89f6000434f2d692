"""What labeling adds to the admin home (Label, and Curate's review grid) and
to an album's page (imagineer_project.workflow). Registered from
LabelingConfig.ready()."""

from __future__ import annotations

from django.db.models import Count as CountOf
from django.http import HttpRequest

from albums.models import Album, Image
from imagineer_project.workflow import (
    Count,
    admin_url,
    register_counts,
    register_link,
    register_onward,
)
from labeling.selectors import captioned_q


def label_counts() -> list[Count]:
    # One aggregate: every image, and those with a caption training can use.
    counts = Image.objects.aggregate(
        total=CountOf("id"), captioned=CountOf("id", filter=captioned_q())
    )
    labels = admin_url("admin:labeling_label_changelist")
    return [
        Count("images captioned", counts["captioned"], labels, "image captioned"),
        Count("not captioned yet", counts["total"] - counts["captioned"]),
    ]


def album_label(request: HttpRequest, album: Album) -> list[tuple[str, str]]:
    if not request.user.has_perm("labeling.add_labelingjob"):
        return []
    url = admin_url("admin:albums_album_label", album.pk)
    return [("Label with Claude", url)]


def album_review(request: HttpRequest, album: Album) -> list[tuple[str, str]]:
    if not request.user.has_perm("albums.change_image"):
        return []
    # The review grid: labeling's page on the image admin.
    url = admin_url("admin:albums_image_review", query=f"album={album.pk}")
    return [("Review", url)]


def register() -> None:
    register_counts("label", label_counts, permission="albums.view_image", order=10)
    # Labeling jobs start from an album (its "Label with Claude" link) or a
    # selection of images, never from an empty form: the link picks an album.
    register_link(
        "label",
        "Label with Claude",
        "admin:albums_album_changelist",
        permission="labeling.add_labelingjob",
        order=10,
    )
    register_link(
        "label",
        "Labels",
        "admin:labeling_label_changelist",
        permission="labeling.view_label",
        order=20,
    )
    register_link(
        "curate",
        "Review grid",
        "admin:albums_image_review",
        permission="albums.change_image",
        order=10,
    )
    register_onward("albums.Album", album_label, order=30)
    register_onward("albums.Album", album_review, order=40)
