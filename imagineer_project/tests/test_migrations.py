"""The data migrations that let the new unique constraints hold on a library
made before them: repeated album positions are renumbered in the order people
saw, repeated imported labels and LoRA files are kept once."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [
    ("albums", "0003_run_waiting_folder_imports_unique_positions"),
    ("labeling", "0005_run_waiting_imported_labels_once"),
    ("training", "0005_dataset_runs_unique_lora_files"),
]


def migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate to `targets`; the historical apps at that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


def test_old_rows_are_made_to_fit_the_new_constraints() -> None:
    old = migrate(BEFORE)
    Album = old.get_model("albums", "Album")
    Image = old.get_model("albums", "Image")
    AlbumImage = old.get_model("albums", "AlbumImage")
    Label = old.get_model("labeling", "Label")
    Lora = old.get_model("training", "Lora")

    album = Album.objects.create(name="Deck", slug="deck")
    images = [
        Image.objects.create(
            sha256=f"{n:064d}",
            file=f"f{n}",
            width=1,
            height=1,
            format="PNG",
            bytes=1,
            phash=n,
            source_kind="upload",
        )
        for n in range(4)
    ]
    # Two adds raced: positions 1, 2, 2, 3 (the third was added after the second).
    for image, position in zip(images, [1, 2, 2, 3], strict=True):
        AlbumImage.objects.create(album=album, image=image, position=position)
    for _ in range(2):  # a page scraped twice before get_or_create had a key
        Label.objects.create(
            image=images[0], kind="alt_text", text="A fool", source="html"
        )
    Label.objects.create(image=images[0], kind="caption", text="mine", source="human")
    Label.objects.create(image=images[0], kind="caption", text="mine", source="human")
    first = Lora.objects.create(name="a", file="loras/x", sha256="x" * 64)
    Lora.objects.create(name="b", file="loras/x", sha256="x" * 64)

    new = migrate(latest())
    AlbumImage = new.get_model("albums", "AlbumImage")
    Label = new.get_model("labeling", "Label")
    Lora = new.get_model("training", "Lora")

    order = list(
        AlbumImage.objects.filter(album_id=album.pk)
        .order_by("position")
        .values_list("image_id", "position")
    )
    assert order == [(images[n].pk, n + 1) for n in range(4)]
    assert Label.objects.filter(source="html").count() == 1
    assert Label.objects.filter(source="human").count() == 2  # people may repeat
    assert all(label.text_sha256 for label in Label.objects.all())
    assert list(Lora.objects.values_list("pk", flat=True)) == [first.pk]
