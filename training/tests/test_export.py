"""Dataset exports: the three layouts, idempotence, refusals, zips."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from albums.models import Image
from albums.tests.builders import make_album, make_image
from labeling.services import label_create
from training.datasets.export import (
    MARKER,
    ExportRefused,
    dataset_export,
    dataset_export_zip,
    export_filename,
)
from training.datasets.services import DatasetInvalid, dataset_version_build
from training.models import DatasetVersion

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _small_thresholds(settings: Any) -> None:
    settings.TRAINING_MIN_CAPTIONED = 2
    settings.TRAINING_WARN_CAPTIONED = 2


@pytest.fixture
def images() -> list[Image]:
    album = make_album(name="Tarot Deck", trigger_word="zxq")
    png = make_image(album=album, fmt="PNG", seed=1)
    jpeg = make_image(album=album, fmt="JPEG", seed=2)
    label_create(image=png, kind="caption", text="a card")
    label_create(image=jpeg, kind="caption", text="zxq, a moon")
    return [png, jpeg]


@pytest.fixture
def dataset(images: list[Image]) -> DatasetVersion:
    return dataset_version_build(albums=[images[0].albums.get()])


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def stored(image: Image) -> bytes:
    with default_storage.open(image.file.name) as f:
        return f.read()


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with PILImage.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
        return im.format, rgb.size, rgb.tobytes()


def test_flat_layout_is_png_and_txt_pairs(
    dataset: DatasetVersion, images: list[Image], tmp_path: Path
) -> None:
    out = dataset_export(dataset, tmp_path / "flat", layout="flat")

    written = files(out)
    assert sorted(written) == [
        MARKER,
        "image_0001.png",
        "image_0001.txt",
        "image_0002.png",
        "image_0002.txt",
    ]
    assert written["image_0001.txt"] == b"zxq, a card"
    assert written["image_0002.txt"] == b"zxq, a moon"
    assert written["image_0001.png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert pixels(written["image_0001.png"]) == pixels(stored(images[0]))
    # The JPEG is converted, pixel for pixel as Pillow decodes it.
    assert pixels(written["image_0002.png"])[1:] == pixels(stored(images[1]))[1:]
    assert json.loads(written[MARKER]) == {
        "dataset_id": dataset.pk,
        "manifest_sha256": dataset.manifest_sha256,
        "layout": "flat",
        "repeats": 10,
        "files": [
            "image_0001.png",
            "image_0001.txt",
            "image_0002.png",
            "image_0002.txt",
        ],
    }


def test_kohya_layout_keeps_originals_in_a_repeats_folder(
    dataset: DatasetVersion, images: list[Image], tmp_path: Path
) -> None:
    out = dataset_export(dataset, tmp_path / "kohya", layout="kohya", repeats=5)

    written = files(out)
    assert sorted(written) == [
        MARKER,
        "5_zxq/image_0001.png",
        "5_zxq/image_0001.txt",
        "5_zxq/image_0002.jpg",
        "5_zxq/image_0002.txt",
    ]
    assert written["5_zxq/image_0001.png"] == stored(images[0])
    assert written["5_zxq/image_0002.jpg"] == stored(images[1])
    assert written["5_zxq/image_0001.txt"] == b"zxq, a card"


def test_kohya_concept_falls_back_to_the_dataset_name(
    images: list[Image], tmp_path: Path
) -> None:
    dataset = dataset_version_build(
        albums=[images[0].albums.get()], trigger_word="", name="Tarot: Major Arcana"
    )

    out = dataset_export(dataset, tmp_path / "kohya", layout="kohya", repeats=3)

    assert (out / "3_tarot-major-arcana" / "image_0001.txt").read_text() == "a card"


def test_jsonl_layout_is_imagefolder_metadata(
    dataset: DatasetVersion, images: list[Image], tmp_path: Path
) -> None:
    out = dataset_export(dataset, tmp_path / "hf", layout="jsonl")

    written = files(out)
    assert sorted(written) == [
        MARKER,
        "image_0001.png",
        "image_0002.jpg",
        "metadata.jsonl",
    ]
    assert written["image_0002.jpg"] == stored(images[1])
    assert written["metadata.jsonl"].decode().splitlines() == [
        '{"file_name": "image_0001.png", "text": "zxq, a card"}',
        '{"file_name": "image_0002.jpg", "text": "zxq, a moon"}',
    ]


def test_exporting_again_changes_nothing(
    dataset: DatasetVersion, tmp_path: Path
) -> None:
    first = files(dataset_export(dataset, tmp_path / "out", layout="flat"))
    image = tmp_path / "out" / "image_0001.png"
    mtime = image.stat().st_mtime_ns
    (tmp_path / "out" / "image_0002.txt").write_text("edited by hand")

    again = files(dataset_export(dataset, tmp_path / "out", layout="flat"))

    assert again == first
    assert image.stat().st_mtime_ns == mtime  # kept, not rewritten


def test_another_layout_replaces_an_earlier_export(
    dataset: DatasetVersion, tmp_path: Path
) -> None:
    dataset_export(dataset, tmp_path / "out", layout="kohya")

    out = dataset_export(dataset, tmp_path / "out", layout="jsonl")

    assert sorted(files(out)) == [
        MARKER,
        "image_0001.png",
        "image_0002.jpg",
        "metadata.jsonl",
    ]
    assert not (out / "10_zxq").exists()


def test_a_folder_with_other_files_is_refused(
    dataset: DatasetVersion, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")

    with pytest.raises(ExportRefused, match="not empty and holds no earlier export"):
        dataset_export(dataset, tmp_path / "out", layout="flat")

    assert sorted(files(tmp_path / "out")) == ["mine.txt"]


def test_bad_layout_and_repeats_are_refused(
    dataset: DatasetVersion, tmp_path: Path
) -> None:
    with pytest.raises(ExportRefused, match="Unknown layout"):
        dataset_export(dataset, tmp_path / "a", layout="csv")
    with pytest.raises(ExportRefused, match="repeats"):
        dataset_export(dataset, tmp_path / "b", layout="kohya", repeats=0)


def test_a_missing_stored_image_names_it(
    dataset: DatasetVersion, images: list[Image], tmp_path: Path
) -> None:
    default_storage.delete(images[1].file.name)

    with pytest.raises(DatasetInvalid, match=f"image {images[1].pk} is missing"):
        dataset_export(dataset, tmp_path / "out", layout="kohya")


@pytest.mark.parametrize("layout", ["flat", "kohya", "jsonl"])
def test_zip_holds_the_folder_export_and_is_reproducible(
    dataset: DatasetVersion, tmp_path: Path, layout: str
) -> None:
    folder = files(dataset_export(dataset, tmp_path / "out", layout=layout))
    del folder[MARKER]

    with dataset_export_zip(dataset, layout) as first:
        data = first.read()
    with dataset_export_zip(dataset, layout) as second:
        assert second.read() == data

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == folder


def test_export_filename_is_safe(dataset: DatasetVersion) -> None:
    dataset.name = '../Tarot "deck"/ + moons'

    assert export_filename(dataset, "kohya") == (
        f"dataset-{dataset.pk}-tarot-deck-moons-{dataset.manifest_sha256[:12]}"
        "-kohya.zip"
    )
