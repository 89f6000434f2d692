"""/api/training/albums and /api/training/datasets."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.serializers.json import DjangoJSONEncoder

from albums.models import Album, Image
from albums.tests.builders import make_album, make_image
from labeling.services import label_create
from training.datasets.services import dataset_version_build
from training.datasets.tasks import run_dataset_export
from training.models import DatasetVersion

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _small_thresholds(settings: Any) -> None:
    settings.TRAINING_MIN_CAPTIONED = 2
    settings.TRAINING_WARN_CAPTIONED = 3


@pytest.fixture
def album() -> Album:
    album = make_album(name="Tarot", trigger_word="zxq")
    for n in range(2):
        image = make_image(album=album, seed=n)
        label_create(image=image, kind="caption", text=f"card {n}")
    return album


def images_of(album: Album) -> list[Image]:
    return list(album.images.order_by("memberships__position"))


def dataset_body(dataset: DatasetVersion, album: Album) -> dict[str, Any]:
    return {
        "id": dataset.pk,
        "name": "Tarot",
        "trigger_word": "zxq",
        "include_nsfw": False,
        "manifest_sha256": dataset.manifest_sha256,
        "image_count": 2,
        "captioned_count": 2,
        "warnings": ["Only 2 captioned images; 3 or more usually give a better LoRA."],
        "albums": [{"id": album.pk, "slug": album.slug, "name": "Tarot"}],
        "created": DjangoJSONEncoder().default(dataset.created),
    }


def test_training_albums(call_as: Any, album: Album) -> None:
    make_image(album=album, is_nsfw=True)

    response = call_as("token").get("/api/training/albums")

    assert response.status_code == 200
    assert response.json() == [
        {
            "id": album.pk,
            "slug": album.slug,
            "name": "Tarot",
            "trigger_word": "zxq",
            "total_images": 3,
            "captioned_images": 2,
            "nsfw_images": 1,
            "rejected_images": 0,
            "ready_for_training": True,
        }
    ]


@pytest.mark.parametrize(("kind", "status"), [("anon", 401), ("user", 403)])
def test_staff_only(call_as: Any, album: Album, kind: str, status: int) -> None:
    client = call_as(kind)
    dataset = dataset_version_build(albums=[album])
    for url in (
        "/api/training/albums",
        "/api/training/datasets",
        f"/api/training/datasets/{dataset.pk}",
        f"/api/training/datasets/{dataset.pk}/export",
    ):
        assert client.get(url).status_code == status, url
    response = client.post(
        "/api/training/datasets",
        {"albums": [album.pk]},
        content_type="application/json",
    )
    assert response.status_code == status
    assert (
        response.json()["error_code"] == {401: "unauthorized", 403: "forbidden"}[status]
    )


def test_create_then_the_same_selection_again(call_as: Any, album: Album) -> None:
    client = call_as("staff")

    created = client.post(
        "/api/training/datasets",
        {"albums": [album.slug]},
        content_type="application/json",
    )
    again = client.post(
        "/api/training/datasets",
        {"albums": [str(album.pk)], "name": "ignored"},
        content_type="application/json",
    )

    dataset = DatasetVersion.objects.get()
    assert created.status_code == 201
    assert created.json() == dataset_body(dataset, album)
    assert again.status_code == 200
    assert again.json() == dataset_body(dataset, album)


def test_create_with_options(call_as: Any, album: Album) -> None:
    nsfw = make_image(album=album, is_nsfw=True)
    label_create(image=nsfw, kind="caption", text="nsfw card")

    response = call_as("token").post(
        "/api/training/datasets",
        {
            "albums": [album.pk],
            "name": " Mine ",
            "trigger_word": "",
            "include_nsfw": True,
        },
        content_type="application/json",
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["trigger_word"], body["include_nsfw"]) == (
        "Mine",
        "",
        True,
    )
    assert (body["image_count"], body["warnings"]) == (3, [])


def test_too_few_captions_is_422(call_as: Any, settings: Any, album: Album) -> None:
    settings.TRAINING_MIN_CAPTIONED = 20

    response = call_as("token").post(
        "/api/training/datasets",
        {"albums": [album.pk]},
        content_type="application/json",
    )

    assert response.status_code == 422
    body = response.json()
    assert body["error_code"] == "dataset_invalid"
    assert body["error"] == (
        "Only 2 captioned images (of 2 usable after leaving out rejected and NSFW "
        "images); at least 20 are needed: label the album(s) or add captions."
    )


def test_unknown_album_is_404_and_empty_list_is_422(call_as: Any, album: Album) -> None:
    client = call_as("token")

    missing = client.post(
        "/api/training/datasets",
        {"albums": [album.pk, "nope"]},
        content_type="application/json",
    )
    empty = client.post(
        "/api/training/datasets", {"albums": []}, content_type="application/json"
    )

    assert (missing.status_code, missing.json()["error"]) == (
        404,
        "Album nope not found.",
    )
    assert (empty.status_code, empty.json()["error_code"]) == (422, "validation_error")
    assert not DatasetVersion.objects.exists()


def test_list_is_newest_first_and_paginated(call_as: Any, album: Album) -> None:
    first = dataset_version_build(albums=[album])
    second = dataset_version_build(albums=[album], trigger_word="other")
    client = call_as("token")

    page = client.get("/api/training/datasets?limit=1").json()
    rest = client.get(f"/api/training/datasets?limit=1&cursor={page['next_cursor']}")

    assert [d["id"] for d in page["items"]] == [second.pk]
    assert rest.json() == {"items": [dataset_body(first, album)], "next_cursor": None}


def test_detail_has_the_items(call_as: Any, album: Album) -> None:
    dataset = dataset_version_build(albums=[album])
    a, b = images_of(album)

    response = call_as("token").get(f"/api/training/datasets/{dataset.pk}")

    assert response.status_code == 200
    assert response.json() == {
        **dataset_body(dataset, album),
        "items": [
            {
                "image_id": a.pk,
                "caption": "card 0",
                "caption_source": "approved caption by a person",
                "repeats": 1,
            },
            {
                "image_id": b.pk,
                "caption": "card 1",
                "caption_source": "approved caption by a person",
                "repeats": 1,
            },
        ],
        "items_truncated": False,
    }
    assert call_as("token").get("/api/training/datasets/999").status_code == 404


@pytest.mark.parametrize(
    ("layout", "names"),
    [
        (
            "flat",
            ["image_0001.png", "image_0001.txt", "image_0002.png", "image_0002.txt"],
        ),
        (
            "kohya",
            [
                "10_zxq/image_0001.jpg",
                "10_zxq/image_0001.txt",
                "10_zxq/image_0002.jpg",
                "10_zxq/image_0002.txt",
            ],
        ),
        ("jsonl", ["image_0001.jpg", "image_0002.jpg", "metadata.jsonl"]),
    ],
)
def test_export_is_a_zip(
    call_as: Any, album: Album, layout: str, names: list[str]
) -> None:
    dataset = dataset_version_build(albums=[album])
    url = f"/api/training/datasets/{dataset.pk}/export?layout={layout}"

    # The worker writes the zip once (a run); until then the answer is 202.
    queued = call_as("token").get(url)
    assert queued.status_code == 202
    export = queued.json()
    assert queued["Location"] == f"/api/training/dataset-exports/{export['id']}"
    assert (export["status"], export["layout"], export["download_url"]) == (
        "queued",
        layout,
        None,
    )
    assert run_dataset_export(export["id"]) == "succeeded"
    done = call_as("token").get(queued["Location"]).json()
    assert done["download_url"] == f"{queued['Location']}/download"

    response = call_as("token").get(url)
    # Only kohya folders repeat: another repeats is the same zip elsewhere.
    again = call_as("token").get(f"{url}&repeats=3")

    assert response.status_code == 200
    assert again.status_code == (200 if layout != "kohya" else 202)
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == (
        f'attachment; filename="dataset-{dataset.pk}-tarot-'
        f'{dataset.manifest_sha256[:12]}-{layout}.zip"'
    )
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        assert archive.namelist() == names
        text_name = next(n for n in names if n.endswith((".txt", ".jsonl")))
        assert "zxq, card 0" in archive.read(text_name).decode()


def test_export_refusals(call_as: Any, album: Album) -> None:
    dataset = dataset_version_build(albums=[album])
    client = call_as("token")
    url = f"/api/training/datasets/{dataset.pk}/export"

    bad = client.get(f"{url}?layout=csv")
    default_storage.delete(images_of(album)[0].file.name)
    export_id = client.get(f"{url}?layout=kohya").json()["id"]
    assert run_dataset_export(export_id) == "failed"
    missing = client.get(f"{url}?layout=kohya")
    early = client.get(f"/api/training/dataset-exports/{export_id}/download")

    assert (bad.status_code, bad.json()["error_code"]) == (422, "validation_error")
    assert missing.status_code == 409
    assert missing.json()["error_code"] == "export_failed"
    assert "is missing from storage" in missing.json()["error"]
    assert "/" not in missing.json()["error"]  # no server paths
    assert early.json()["error_code"] == "export_not_ready"
