"""Dataset versions: selection, caption choice, validation, identity, files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext

from albums.models import Image
from albums.services import album_add_images
from albums.tests.builders import make_album, make_image
from labeling.models import Label
from labeling.services import label_create
from training.datasets.files import caption_with_trigger, dataset_materialize
from training.datasets.services import (
    DatasetInvalid,
    dataset_build_start,
    dataset_version_build,
    dataset_version_build_or_get,
    manifest_hash,
)
from training.models import DatasetBuild, DatasetVersion

pytestmark = pytest.mark.django_db

Kind, Source, Review = Label.Kind, Label.Source, Label.Review


@pytest.fixture(autouse=True)
def _small_thresholds(settings: Any) -> None:
    settings.TRAINING_MIN_CAPTIONED = 2
    settings.TRAINING_WARN_CAPTIONED = 4


def captioned(album: Any, text: str, **image_fields: Any) -> Image:
    image = make_image(album=album, **image_fields)
    label_create(image=image, kind=Kind.CAPTION, text=text)
    return image


def test_build_selects_captioned_images_in_album_order() -> None:
    first = make_album(name="Tarot", trigger_word="zxqtarot")
    second = make_album(name="Moons")
    a = captioned(first, "a card")
    b = captioned(first, "a second card")
    captioned(first, "a rejected card", review_status=Image.ReviewStatus.REJECTED)
    captioned(first, "an nsfw card", is_nsfw=True)
    uncaptioned = make_image(album=first)
    c = captioned(second, "a moon")
    album_add_images(album=second, images=[a])  # in both albums: once

    version = dataset_version_build(albums=[first, second])

    assert [item["image_id"] for item in version.manifest["items"]] == [
        a.pk,
        b.pk,
        c.pk,
    ]
    assert version.name == "Tarot + Moons"
    assert version.trigger_word == "zxqtarot"
    assert version.include_nsfw is False
    assert version.image_count == 4  # a, b, c and the uncaptioned one
    assert version.captioned_count == 3
    assert version.warnings == [
        "1 image without a caption left out: label the album(s) to include them.",
        "Only 3 captioned images; 4 or more usually give a better LoRA.",
    ]
    assert set(version.albums.all()) == {first, second}
    assert uncaptioned.pk not in {i["image_id"] for i in version.manifest["items"]}
    assert version.manifest["items"][0] == {
        "image_id": a.pk,
        "sha256": a.sha256,
        "file": a.file.name,
        "width": 64,
        "height": 48,
        "caption": "a card",
        "caption_source": "approved caption by a person",
    }
    assert version.manifest["albums"] == [
        {"id": first.pk, "slug": first.slug, "name": "Tarot"},
        {"id": second.pk, "slug": second.slug, "name": "Moons"},
    ]
    assert version.manifest_sha256 == manifest_hash(version.manifest)


def test_include_nsfw_keeps_nsfw_images_but_never_rejected_ones() -> None:
    album = make_album()
    safe = captioned(album, "safe")
    nsfw = captioned(album, "nsfw", is_nsfw=True)
    captioned(album, "rejected", is_nsfw=True, review_status="rejected")

    version = dataset_version_build(albums=[album], include_nsfw=True)

    assert [i["image_id"] for i in version.manifest["items"]] == [safe.pk, nsfw.pk]
    assert version.include_nsfw is True


def test_caption_follows_the_training_rule() -> None:
    album = make_album()
    image = make_image(album=album)
    label_create(image=image, kind=Kind.ALT_TEXT, text="alt", source=Source.HTML)
    label_create(image=image, kind=Kind.CAPTION, text="from claude", source="claude")
    label_create(
        image=image, kind=Kind.CAPTION, text="rejected", review=Review.REJECTED
    )
    other = make_image(album=album)
    label_create(image=other, kind=Kind.TITLE, text="page title", source=Source.HTML)

    items = dataset_version_build(albums=[album]).manifest["items"]

    assert [(i["caption"], i["caption_source"]) for i in items] == [
        ("from claude", "newest caption from Claude"),
        ("page title", "caption from the page (title)"),
    ]


def test_trigger_word_from_the_first_album_that_has_one_or_given(
    settings: Any,
) -> None:
    settings.TRAINING_MIN_CAPTIONED = 1
    plain = make_album(name="Plain")
    named = make_album(name="Named", trigger_word=" zxqmoon ")
    captioned(plain, "one")
    captioned(named, "two")

    assert dataset_version_build(albums=[plain, named]).trigger_word == "zxqmoon"
    assert dataset_version_build(albums=[plain], trigger_word="").trigger_word == ""
    given = dataset_version_build(albums=[named], trigger_word="other")
    assert given.trigger_word == "other"
    assert given.manifest["trigger_word"] == "other"


def test_the_same_selection_gives_the_same_version() -> None:
    album = make_album(name="Tarot")
    captioned(album, "one")
    captioned(album, "two")

    first, created = dataset_version_build_or_get(albums=[album])
    second, created_again = dataset_version_build_or_get(albums=[album], name="Other")

    assert (created, created_again) == (True, False)
    assert second.pk == first.pk
    assert second.name == "Tarot"
    assert DatasetVersion.objects.count() == 1


def test_a_concurrent_build_of_the_same_selection_is_found(monkeypatch: Any) -> None:
    album = make_album(name="Tarot")
    captioned(album, "one")
    captioned(album, "two")
    version = dataset_version_build(albums=[album])
    # As if another process created the row between our check and our insert.
    monkeypatch.setattr("training.datasets.services._existing", lambda sha: None)
    other = make_album(name="Other")

    again, created = dataset_version_build_or_get(albums=[album, other])

    assert (again.pk, created) == (version.pk, False)
    assert set(again.albums.all()) == {album, other}
    assert DatasetVersion.objects.count() == 1


def test_renaming_an_album_keeps_the_hash_adding_an_empty_album_joins_it() -> None:
    album = make_album(name="Tarot")
    captioned(album, "one")
    captioned(album, "two")
    version = dataset_version_build(albums=[album])
    album.name = "Renamed"
    album.save()
    empty = make_album(name="Empty")

    again = dataset_version_build(albums=[album, empty])

    assert again.pk == version.pk
    assert set(again.albums.all()) == {album, empty}


def test_a_changed_caption_or_trigger_word_makes_a_new_version() -> None:
    album = make_album()
    image = captioned(album, "one")
    captioned(album, "two")
    version = dataset_version_build(albums=[album])
    label_create(image=image, kind=Kind.CAPTION, text="one, rewritten")

    changed = dataset_version_build(albums=[album])
    triggered = dataset_version_build(albums=[album], trigger_word="zxq")

    assert len({version.pk, changed.pk, triggered.pk}) == 3
    assert changed.manifest["items"][0]["caption"] == "one, rewritten"


def test_too_few_captioned_images_is_invalid(settings: Any) -> None:
    settings.TRAINING_MIN_CAPTIONED = 20
    album = make_album()
    captioned(album, "one")
    make_image(album=album)

    with pytest.raises(DatasetInvalid) as caught:
        dataset_version_build(albums=[album])

    assert str(caught.value) == (
        "Only 1 captioned images (of 2 usable after leaving out rejected and NSFW "
        "images); at least 20 are needed: label the album(s) or add captions."
    )
    assert not DatasetVersion.objects.exists()


def test_no_albums_is_invalid() -> None:
    with pytest.raises(DatasetInvalid, match="at least one album"):
        dataset_version_build(albums=[])


@pytest.mark.parametrize(
    ("repeats", "match"),
    [({12345: 2}, "not chosen"), ({0: 0}, "between 1 and")],
)
def test_a_build_with_wrong_repeats_is_refused_before_it_is_queued(
    repeats: dict[int, int], match: str
) -> None:
    album = make_album(name="Tarot")
    repeats = {album.pk if k == 0 else k: v for k, v in repeats.items()}

    with pytest.raises(DatasetInvalid, match=match):
        dataset_build_start(albums=[album], repeats=repeats)

    assert not DatasetBuild.objects.exists()


def test_enough_images_give_no_warnings(settings: Any) -> None:
    settings.TRAINING_WARN_CAPTIONED = 2
    album = make_album()
    captioned(album, "one")
    captioned(album, "two")

    assert dataset_version_build(albums=[album]).warnings == []


def test_images_that_look_generated_are_flagged(settings: Any) -> None:
    settings.TRAINING_WARN_CAPTIONED = 2
    album = make_album()
    own_output = captioned(album, "one", source_kind="generated")
    captioned(album, "two")

    assert dataset_version_build(albums=[album]).warnings == [
        f"1 image (#{own_output.pk}) looks like images this system generated: "
        "training on a model's own output narrows what it can do; review them."
    ]


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("a card", "zxq, a card"),
        ("zxq a card", "zxq a card"),
        ("a ZXQ card", "a ZXQ card"),
        ("a zxqy card", "zxq, a zxqy card"),
    ],
)
def test_caption_with_trigger(caption: str, expected: str) -> None:
    assert caption_with_trigger(caption, "zxq") == expected
    assert caption_with_trigger(caption, "") == caption


def test_materialize_copies_files_once_in_manifest_order(tmp_path: Path) -> None:
    album = make_album(trigger_word="zxq")
    a = captioned(album, "one", fmt="PNG")
    b = captioned(album, "zxq two")
    version = dataset_version_build(albums=[album])

    pairs = dataset_materialize(version, tmp_path / "data")

    assert [(p.name, text) for p, text in pairs] == [
        (f"00001-{a.sha256[:12]}.png", "zxq, one"),
        (f"00002-{b.sha256[:12]}.jpg", "zxq two"),
    ]
    assert pairs[0][0].read_bytes() == default_storage.open(a.file.name).read()
    before = pairs[1][0].stat().st_mtime_ns
    again = dataset_materialize(version, tmp_path / "data")
    assert again == pairs
    assert pairs[1][0].stat().st_mtime_ns == before  # not copied twice
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(
        p.name for p, _ in pairs
    )


def test_materialize_names_a_missing_file(tmp_path: Path) -> None:
    album = make_album()
    a = captioned(album, "one")
    captioned(album, "two")
    version = dataset_version_build(albums=[album])
    default_storage.delete(a.file.name)

    with pytest.raises(DatasetInvalid, match=f"image {a.pk} is missing"):
        dataset_materialize(version, tmp_path / "data")


def test_build_costs_the_same_queries_for_more_images() -> None:
    def queries_to_build(count: int) -> int:
        album = make_album()
        for n in range(count):
            captioned(album, f"caption {n}")
        with CaptureQueriesContext(connection) as ctx:
            dataset_version_build(albums=[album])
        return len(ctx)

    assert queries_to_build(2) == queries_to_build(6)
