"""The stored album counts and covers (albums.counts) equal a fresh count after
every kind of write: adds, removals, triage of visibility and NSFW, deletes,
album deletes, releases, near-duplicate replacement, the labeler's rating, and
adds that race (PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from albums.counts import album_counts_fresh, album_counts_stored
from albums.models import Album, NearDuplicates, SourceKind, Visibility
from albums.services import (
    album_add_images,
    album_delete,
    album_release_images,
    album_remove_images,
    image_ingest,
    image_update,
    images_delete,
    images_set,
    near_duplicate_policy,
)
from albums.tests.builders import make_album, make_image
from imagineer_project.testing import make_image_bytes

pytestmark = pytest.mark.django_db


def assert_consistent(*albums: Album) -> dict[str, int | None]:
    """Each album's stored figures equal a fresh count; the last one's."""
    for album in albums:
        assert album_counts_stored(album) == album_counts_fresh(album), album
    return album_counts_stored(albums[-1])


def test_adds_count_every_member_and_the_public_ones() -> None:
    album = make_album()
    assert assert_consistent(album) == {
        "image_count": 0,
        "public_image_count": 0,
        "cover_id": None,
        "public_cover_id": None,
    }
    nsfw = make_image(is_nsfw=True)
    private = make_image(visibility=Visibility.PRIVATE)
    safe = make_image()
    album_add_images(album=album, images=[nsfw, private])
    album_add_images(album=album, images=[safe, nsfw])  # nsfw already in
    assert assert_consistent(album) == {
        "image_count": 3,
        "public_image_count": 1,
        "cover_id": nsfw.pk,
        "public_cover_id": safe.pk,
    }


def test_removing_the_covers_moves_them_to_the_next_members() -> None:
    album = make_album()
    images = [make_image(album=album, seed=n) for n in range(4)]
    album_remove_images(album=album, image_ids=[images[0].pk, images[2].pk])
    figures = assert_consistent(album)
    assert (figures["image_count"], figures["cover_id"]) == (2, images[1].pk)
    album_remove_images(album=album, image_ids=[im.pk for im in images])
    assert assert_consistent(album)["cover_id"] is None


def test_triage_recounts_every_album_holding_the_images() -> None:
    first, second = make_album(name="One"), make_album(name="Two")
    images = [make_image(album=first, seed=n) for n in range(3)]
    album_add_images(album=second, images=images[::-1])
    images_set(image_ids=[images[0].pk, images[2].pk], is_nsfw=True)
    assert assert_consistent(first)["public_cover_id"] == images[1].pk
    assert assert_consistent(second)["public_image_count"] == 1
    image_update(image=images[1], visibility=Visibility.PRIVATE)
    assert assert_consistent(first, second)["public_cover_id"] is None
    images_set(image_ids=[im.pk for im in images], is_nsfw=False)
    image_update(image=images[1], visibility=Visibility.PUBLIC)
    assert assert_consistent(first, second)["public_image_count"] == 3


def test_deleting_images_recounts_the_albums_that_held_them() -> None:
    first, second = make_album(name="One"), make_album(name="Two")
    shared = make_image(album=first, seed=1)
    album_add_images(album=second, images=[shared])
    make_image(album=first, seed=2)
    images_delete(images=[shared])
    assert assert_consistent(first)["image_count"] == 1
    assert assert_consistent(second)["cover_id"] is None


def test_album_delete_and_release_leave_the_other_albums_right() -> None:
    first, second = make_album(name="One"), make_album(name="Two")
    shared = make_image(album=first, seed=1)
    own = make_image(album=first, seed=2)
    album_add_images(album=second, images=[own, shared])
    extra = make_image(album=second, seed=3)
    album_release_images(album=second, image_ids=[extra.pk, own.pk])
    assert assert_consistent(first, second)["image_count"] == 1
    album_delete(album=first)
    assert assert_consistent(second) == {
        "image_count": 1,
        "public_image_count": 1,
        "cover_id": shared.pk,
        "public_cover_id": shared.pk,
    }


def test_a_larger_near_duplicate_takes_the_smaller_ones_place_and_counts() -> None:
    album = make_album()
    policy = near_duplicate_policy(NearDuplicates.REPLACE_SMALLER)
    first = make_image(album=album, seed=5)

    def ingest(size: tuple[int, int]) -> object:
        return image_ingest(
            data=make_image_bytes("PNG", size, seed=77),
            filename="x.png",
            source_kind=SourceKind.UPLOAD,
            album=album,
            near_duplicates=policy,
        )

    small = ingest((64, 48))
    large = ingest((128, 96))
    assert large.near_duplicate()["action"] == "replaced"
    assert small.image.pk != large.image.pk
    figures = assert_consistent(album)
    assert (figures["image_count"], figures["cover_id"]) == (2, first.pk)


def test_the_labelers_rating_recounts_the_public_figures() -> None:
    from labeling.claude import LabelResult
    from labeling.services import labels_write_from_claude

    album = make_album()
    image = make_image(album=album)
    result = LabelResult(
        caption="A card", tags=[], nsfw_rating="EXPLICIT", confidence=1
    )
    labels_write_from_claude(
        image=image, result=result, kind="caption", model_name="m", prompt_version="1"
    )
    image.refresh_from_db()
    assert image.is_nsfw
    assert assert_consistent(album)["public_image_count"] == 0


def test_a_rating_that_keeps_the_flag_leaves_the_albums_alone() -> None:
    # Labeling a big album must not recount it once per image.
    from django.test.utils import CaptureQueriesContext

    from labeling.claude import LabelResult
    from labeling.services import labels_write_from_claude

    album = make_album()
    image = make_image(album=album)
    safe = LabelResult(caption="A card", tags=[], nsfw_rating="SAFE", confidence=1)
    with CaptureQueriesContext(connection) as captured:
        labels_write_from_claude(
            image=image, result=safe, kind="caption", model_name="m", prompt_version="1"
        )
    assert not [q for q in captured if '"albums_album"' in q["sql"]]
    image.refresh_from_db()
    assert (image.is_nsfw, image.nsfw_source) == (False, "model")
    assert assert_consistent(album)["public_image_count"] == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"
)
def test_concurrent_adds_and_triage_keep_the_counts() -> None:
    album = make_album()
    images = [make_image(seed=n) for n in range(20)]
    start = threading.Barrier(len(images))
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            start.wait()
            album_add_images(album=album, images=[images[n]])
            if n % 3 == 0:
                images_set(image_ids=[images[n].pk], is_nsfw=True)
        except BaseException as exc:  # the assertion below shows it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert assert_consistent(album)["image_count"] == 20
