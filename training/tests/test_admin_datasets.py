"""Dataset version admin: list, search, build form, read-only page, exports."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from django.core.files.storage import default_storage

from albums.models import Album
from albums.tests.builders import make_album, make_image
from imagineer_project.testing import admin_listed, query_count
from labeling.services import label_create
from training.datasets.services import dataset_version_build
from training.datasets.tasks import run_dataset_build, run_dataset_export
from training.models import DatasetBuild, DatasetExport, DatasetVersion

pytestmark = pytest.mark.django_db

LIST = "/admin/training/datasetversion/"
ADD = "/admin/training/datasetversion/add/"


@pytest.fixture(autouse=True)
def _small_thresholds(settings: Any) -> None:
    settings.TRAINING_MIN_CAPTIONED = 2
    settings.TRAINING_WARN_CAPTIONED = 3


def labelled_album(name: str, count: int = 2, **fields: Any) -> Album:
    album = make_album(name=name, **fields)
    for n in range(count):
        image = make_image(album=album)
        label_create(image=image, kind="caption", text=f"{name} card {n}")
    return album


def test_changelist_and_search(admin_client: Any) -> None:
    tarot = dataset_version_build(albums=[labelled_album("Tarot")])
    moons = dataset_version_build(albums=[labelled_album("Moons")])

    assert admin_listed(admin_client.get(LIST)) == [moons.pk, tarot.pk]
    assert admin_listed(admin_client.get(LIST, {"q": "tarot"})) == [tarot.pk]
    prefix = moons.manifest_sha256[:12]
    assert admin_listed(admin_client.get(LIST, {"q": prefix})) == [moons.pk]
    response = admin_client.get(LIST)
    assert f"<code>{prefix}</code>" in response.content.decode()


def test_changelist_queries_do_not_grow(admin_client: Any) -> None:
    dataset_version_build(albums=[labelled_album("One")])
    few = query_count(admin_client, LIST)
    dataset_version_build(albums=[labelled_album("Two")])
    dataset_version_build(albums=[labelled_album("Three")])

    assert query_count(admin_client, LIST) == few


def test_add_page_lists_albums_with_readiness(admin_client: Any) -> None:
    labelled_album("Tarot")
    make_image(album=labelled_album("Moons", count=1))

    page = admin_client.get(ADD).content.decode()

    assert "Moons — 1/2 captioned, not ready" in page
    assert "Tarot — 2/2 captioned, ready" in page


# The worker runs the build (or export) inline: a committed request is a
# fast worker's.
@pytest.mark.django_db(transaction=True)
def test_add_builds_a_version_and_redirects(admin_client: Any, admin_user: Any) -> None:
    tarot = labelled_album("Tarot", trigger_word="zxq")
    moons = labelled_album("Moons")

    response = admin_client.post(
        ADD, {"albums": [tarot.pk, moons.pk], "name": "", "trigger_word": ""}
    )

    dataset = DatasetVersion.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}{dataset.pk}/change/"
    # Albums in list order (by name); the first trigger word found.
    assert (dataset.name, dataset.trigger_word) == ("Moons + Tarot", "zxq")
    assert dataset.created_by == admin_user
    assert dataset.captioned_count == 4


# The worker runs the build (or export) inline: a committed request is a
# fast worker's.
@pytest.mark.django_db(transaction=True)
def test_add_with_options(admin_client: Any) -> None:
    tarot = labelled_album("Tarot", trigger_word="zxq")
    nsfw = make_image(album=tarot, is_nsfw=True)
    label_create(image=nsfw, kind="caption", text="nsfw card")

    admin_client.post(
        ADD,
        {"albums": [tarot.pk], "name": "Mine", "include_nsfw": "on"},
    )
    admin_client.post(ADD, {"albums": [tarot.pk], "no_trigger_word": "on"})
    admin_client.post(ADD, {"albums": [tarot.pk], "trigger_word": "other"})

    assert list(
        DatasetVersion.objects.order_by("id").values_list(
            "name", "trigger_word", "include_nsfw", "captioned_count"
        )
    ) == [
        ("Mine", "zxq", True, 3),
        ("Tarot", "", False, 2),
        ("Tarot", "other", False, 2),
    ]


# The worker runs the build (or export) inline: a committed request is a
# fast worker's.
@pytest.mark.django_db(transaction=True)
def test_add_the_same_selection_finds_the_version(admin_client: Any) -> None:
    tarot = labelled_album("Tarot")
    dataset = dataset_version_build(albums=[tarot])

    response = admin_client.post(ADD, {"albums": [tarot.pk]}, follow=True)

    assert response.redirect_chain == [(f"{LIST}{dataset.pk}/change/", 302)]
    assert "The same selection is already" in response.content.decode()
    assert DatasetVersion.objects.count() == 1


def test_add_too_few_captions_is_a_form_error(admin_client: Any) -> None:
    album = labelled_album("Tarot", count=1)

    response = admin_client.post(ADD, {"albums": [album.pk]})

    assert response.status_code == 200
    assert "at least 2 are needed: label the album(s)" in response.content.decode()
    assert not DatasetVersion.objects.exists()


def test_change_page_is_read_only_with_items_and_exports(admin_client: Any) -> None:
    album = labelled_album("Tarot")
    dataset = dataset_version_build(albums=[album])
    first = dataset.manifest["items"][0]["image_id"]

    page = admin_client.get(f"{LIST}{dataset.pk}/change/").content.decode()

    assert "Only 2 captioned images; 3 or more usually give a better LoRA." in page
    assert f"/api/images/{first}/thumbnail?size=256" in page
    assert "Tarot card 0" in page
    assert "approved caption by a person" in page
    for layout in ("flat", "kohya", "jsonl"):
        assert f"{LIST}{dataset.pk}/export/{layout}/" in page
    assert 'name="_save"' not in page


def test_change_page_shows_at_most_200_items(admin_client: Any, settings: Any) -> None:
    album = labelled_album("Tarot", count=2)
    dataset = dataset_version_build(albums=[album])
    item = dataset.manifest["items"][0]
    dataset.manifest["items"] = [item] * 201
    dataset.save()

    page = admin_client.get(f"{LIST}{dataset.pk}/change/").content.decode()

    assert page.count("imagineer-thumb") == 200
    assert "The first 200 of 201 items" in page


# The worker runs the build (or export) inline: a committed request is a
# fast worker's.
@pytest.mark.django_db(transaction=True)
def test_export_download(admin_client: Any) -> None:
    dataset = dataset_version_build(
        albums=[labelled_album("Tarot", trigger_word="zxq")]
    )

    response = admin_client.get(f"{LIST}{dataset.pk}/export/kohya/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert "attachment;" in response["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        assert archive.namelist() == [
            "10_zxq/image_0001.jpg",
            "10_zxq/image_0001.txt",
            "10_zxq/image_0002.jpg",
            "10_zxq/image_0002.txt",
        ]
    assert admin_client.get(f"{LIST}{dataset.pk}/export/csv/").status_code == 404


# The worker runs the build (or export) inline: a committed request is a
# fast worker's.
@pytest.mark.django_db(transaction=True)
def test_export_with_a_missing_file_says_so(admin_client: Any) -> None:
    album = labelled_album("Tarot")
    dataset = dataset_version_build(albums=[album])
    default_storage.delete(album.images.first().file.name)

    response = admin_client.get(f"{LIST}{dataset.pk}/export/flat/", follow=True)

    export = DatasetExport.objects.get()
    assert response.redirect_chain == [
        (f"/admin/training/datasetexport/{export.pk}/change/", 302)
    ]
    assert export.status == "failed"
    page = response.content.decode()
    assert "is missing from storage" in page
    assert 'type="submit" class="imagineer-tool-button">Retry' in page


def test_a_build_the_worker_has_not_run_yet_is_followed_on_its_page(
    admin_client: Any,
) -> None:
    tarot = labelled_album("Tarot")

    response = admin_client.post(ADD, {"albums": [tarot.pk]})

    build = DatasetBuild.objects.get()
    assert response["Location"] == f"/admin/training/datasetbuild/{build.pk}/change/"
    assert admin_client.get(response["Location"]).status_code == 200
    assert run_dataset_build(build.pk) == "succeeded"
    build.refresh_from_db()
    page = admin_client.get(response["Location"]).content.decode()
    assert f"{LIST}{build.dataset_id}/change/" in page


def test_an_export_the_worker_has_not_written_yet_is_offered_on_its_page(
    admin_client: Any,
) -> None:
    dataset = dataset_version_build(albums=[labelled_album("Tarot")])

    response = admin_client.get(f"{LIST}{dataset.pk}/export/jsonl/")

    export = DatasetExport.objects.get()
    page_url = f"/admin/training/datasetexport/{export.pk}/change/"
    assert response["Location"] == page_url
    assert "Offered here once" in admin_client.get(page_url).content.decode()
    early = admin_client.get(f"/admin/training/datasetexport/{export.pk}/download/")
    assert early.status_code == 302 and early["Location"] == page_url
    assert run_dataset_export(export.pk) == "succeeded"
    assert "Download the zip" in admin_client.get(page_url).content.decode()
    download = admin_client.get(f"/admin/training/datasetexport/{export.pk}/download/")
    assert download["Content-Type"] == "application/zip"


def test_build_page_repeats_reach_the_manifest_through_the_worker(
    admin_client: Any,
) -> None:
    tarot = labelled_album("Tarot")
    faces = labelled_album("Faces")
    page = admin_client.get(ADD).content.decode()
    assert 'name="album_repeats"' in page

    response = admin_client.post(
        ADD, {"albums": [tarot.pk, faces.pk], "album_repeats": "tarot=3, Faces=1"}
    )

    build = DatasetBuild.objects.get()
    assert build.album_repeats == {str(tarot.pk): 3, str(faces.pk): 1}
    build_page = admin_client.get(response["Location"]).content.decode()
    assert "Tarot</a> ×3" in build_page
    assert "Faces</a>, <a" in build_page  # once: no "×1"
    assert run_dataset_build(build.pk) == "succeeded"
    build.refresh_from_db()
    repeats = {
        item["caption"]: item.get("repeats", 1)
        for item in build.dataset.manifest["items"]
    }
    assert repeats == {
        "Tarot card 0": 3,
        "Tarot card 1": 3,
        "Faces card 0": 1,
        "Faces card 1": 1,
    }
    version_page = admin_client.get(f"{LIST}{build.dataset_id}/change/")
    assert "<th>Repeats</th>" in version_page.content.decode()


def test_build_page_repeats_of_one_find_the_version_without_repeats(
    admin_client: Any,
) -> None:
    tarot = labelled_album("Tarot")
    plain = dataset_version_build(albums=[tarot])

    admin_client.post(ADD, {"albums": [tarot.pk], "album_repeats": "tarot=1"})
    admin_client.post(ADD, {"albums": [tarot.pk], "album_repeats": "tarot=2"})

    first, second = DatasetBuild.objects.order_by("id")
    assert run_dataset_build(first.pk) == run_dataset_build(second.pk) == "succeeded"
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.dataset, first.created_version) == (plain, False)
    assert second.dataset != plain and second.created_version


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("elsewhere=2", "&#x27;elsewhere&#x27; is not one of the chosen albums."),
        ("tarot=0", "&#x27;tarot=0&#x27;: repeats must be 1 to"),
        ("tarot", "&#x27;tarot&#x27;: write album=count, e.g. tarot=2."),
    ],
)
def test_build_page_refuses_wrong_repeats(
    admin_client: Any, text: str, error: str
) -> None:
    tarot = labelled_album("Tarot")

    response = admin_client.post(ADD, {"albums": [tarot.pk], "album_repeats": text})

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not DatasetBuild.objects.exists()
