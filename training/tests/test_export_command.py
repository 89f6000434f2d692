"""manage.py export_dataset."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from albums.models import Album
from albums.tests.builders import make_album, make_image
from labeling.services import label_create
from training.datasets.services import dataset_version_build
from training.models import DatasetVersion

pytestmark = pytest.mark.django_db


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


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_dataset", *args, stdout=out)
    return out.getvalue()


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_from_albums_builds_then_exports(tmp_path: Path) -> None:
    labelled_album("Tarot", trigger_word="zxq")
    moons = labelled_album("Moons")

    output = export(
        "--album", "Tarot", "--album", moons.slug,
        "--layout", "kohya", "--repeats", "4", "--out", str(tmp_path / "out"),
    )  # fmt: skip

    dataset = DatasetVersion.objects.get()
    assert output.splitlines() == [
        "Built a new dataset version.",
        f"Dataset version #{dataset.pk} “Tarot + Moons”",
        f"sha256 {dataset.manifest_sha256}",
        "4 captioned images exported (of 4 usable), trigger word “zxq”",
        f"Wrote the kohya layout to {(tmp_path / 'out').resolve()}",
    ]
    assert listing(tmp_path / "out") == [
        ".imagineer-export.json",
        "4_zxq",
        *(f"4_zxq/image_000{n}.{ext}" for n in range(1, 5) for ext in ("jpg", "txt")),
    ]
    assert (tmp_path / "out/4_zxq/image_0003.txt").read_text() == "zxq, Moons card 0"


def test_again_reuses_the_version_and_the_folder(tmp_path: Path) -> None:
    labelled_album("Tarot")
    args = ("--album", "Tarot", "--layout", "flat", "--out", str(tmp_path / "out"))
    export(*args)

    output = export(*args, "--trigger-word", "")

    assert output.splitlines()[0] == "Reused the identical dataset version."
    assert "Warning: Only 2 captioned images" in output
    assert DatasetVersion.objects.count() == 1


def test_from_a_dataset_id(tmp_path: Path) -> None:
    dataset = dataset_version_build(albums=[labelled_album("Tarot")], trigger_word="t")

    out = tmp_path / "out"
    export("--dataset", str(dataset.pk), "--layout", "jsonl", "--out", str(out))

    assert (out / "metadata.jsonl").read_text().splitlines() == [
        '{"file_name": "image_0001.jpg", "text": "t, Tarot card 0"}',
        '{"file_name": "image_0002.jpg", "text": "t, Tarot card 1"}',
    ]


def test_include_nsfw_and_trigger_word(tmp_path: Path) -> None:
    album = labelled_album("Tarot", trigger_word="zxq")
    nsfw = make_image(album=album, is_nsfw=True)
    label_create(image=nsfw, kind="caption", text="nsfw")

    export(
        "--album", "Tarot", "--include-nsfw", "--trigger-word", "",
        "--layout", "flat", "--out", str(tmp_path / "out"),
    )  # fmt: skip

    dataset = DatasetVersion.objects.get()
    assert (dataset.include_nsfw, dataset.trigger_word, dataset.captioned_count) == (
        True,
        "",
        3,
    )
    assert (tmp_path / "out/image_0003.txt").read_text() == "nsfw"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--album", "Nope"], "No album named 'Nope'."),
        (["--dataset", "999"], "No dataset version 999."),
        (["--album", "Sparse"], "Only 1 captioned images"),
        (["--album", "Tarot", "--repeats", "0"], "--repeats must be between 1 and"),
        (["--dataset", "1", "--include-nsfw"], "use them with --album"),
    ],
)
def test_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    labelled_album("Tarot")
    labelled_album("Sparse", count=1)

    with pytest.raises(CommandError, match=message):
        export(*args, "--layout", "flat", "--out", str(tmp_path / "out"))

    assert not (tmp_path / "out").exists()


def test_a_folder_with_other_files_is_refused(tmp_path: Path) -> None:
    labelled_album("Tarot")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/notes.txt").write_text("mine")

    with pytest.raises(CommandError, match="not empty and holds no earlier export"):
        export("--album", "Tarot", "--layout", "flat", "--out", str(tmp_path / "out"))


def test_ambiguous_album_names_ask_for_a_slug(tmp_path: Path) -> None:
    first = labelled_album("Tarot")
    second = labelled_album("Tarot")

    with pytest.raises(CommandError, match=f"use a slug: {first.slug}, {second.slug}"):
        export("--album", "Tarot", "--layout", "flat", "--out", str(tmp_path / "o"))
