"""A realistic legacy tree imported through the command: albums, recipes,
captions, items; a second run creates nothing; a dry run changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from albums.models import Album, Image
from labeling.models import Label
from legacy.collect import collect_outputs, collect_packs
from legacy.models import ImportItem, ImportRun
from legacy.selectors import import_summary
from legacy.tests.builders import LegacyTree, build_legacy_tree
from training.models import ImageRecipe

ALBUMS = {
    "Legacy Singles/2024-03": 1,  # the fox: dated by its sidecar
    "Legacy Singles/2023-11": 1,  # the moon: by its sidecar's timestamp
    "Legacy Singles/2024-04": 1,  # a broken sidecar: by the name
    "Legacy Singles/undated": 1,  # no sidecar, no date in the name
    "Decks/card-deck-antique": 2,
    "Decks/tarot-deck-mystic": 1,
    "Zodiac/zodiac-night": 1,
    "LoRA Experiments/lora-tests": 2,  # plain.png and the copy of aries
    "LoRA Experiments/sketchy": 1,
    "Batches/card-sets-2023-misc": 1,
    "Reference Packs/tarot-refs": 2,
    "Reference Packs/zodiac-refs": 1,
}


@pytest.fixture
def tree(tmp_path: Path) -> LegacyTree:
    return build_legacy_tree(tmp_path / "legacy")


def outcomes(run: ImportRun) -> dict[str, str]:
    return dict(run.items.values_list("relative_path", "outcome"))


def import_tree(tree: LegacyTree, *extra: str) -> ImportRun:
    call_command("import_legacy", str(tree.outputs), "--packs", str(tree.packs), *extra)
    return ImportRun.objects.latest("id")


def test_the_folder_rules_without_a_database(tree: LegacyTree) -> None:
    found = {f.relative: f for f in collect_outputs(tree.outputs)}
    assert {(f.kind, f.group) for f in found.values() if f.is_image} == {
        ("single", ""),
        ("deck", "card-deck-antique"),
        ("deck", "tarot-deck-mystic"),
        ("zodiac", "zodiac-night"),
        ("lora_test", "lora-tests"),
        ("lora_test", "sketchy"),
        ("batch", "card-sets-2023-misc"),
    }
    assert found["escape.png"].reject == "a symlink that leaves the source folder"
    assert found["thumbnails/1.png"].skip == "a thumbnail the old system made"
    assert found["README.md"].skip == "not an image (.md file)"
    assert found["lost.json"].skip == "a sidecar with no image"
    assert "moon.json" not in found  # a sidecar goes with its image
    assert found["moon.png"].sidecar == tree.outputs / "moon.json"
    packs = {f.relative: f for f in collect_packs(tree.packs)}
    assert sorted(packs) == [
        "tarot_refs/t1.jpg",
        "tarot_refs/t2.jpg",
        "zodiac refs/z1.png",
    ]
    assert packs["tarot_refs/t1.jpg"].caption == tree.packs / "tarot_refs" / "t1.txt"
    assert packs["tarot_refs/t2.jpg"].caption is None


def test_names_with_pattern_characters_keep_their_sidecars(tmp_path: Path) -> None:
    # "[1]" is a glob pattern: the pairing is by name, not by pattern.
    (tmp_path / "card[1].png").write_bytes(b"png")
    (tmp_path / "card[1].json").write_text("{}")
    (tmp_path / "card[2].json").write_text("{}")
    found = {f.relative: f for f in collect_outputs(tmp_path)}
    assert sorted(found) == ["card[1].png", "card[2].json"]
    assert found["card[1].png"].sidecar == tmp_path / "card[1].json"
    assert found["card[2].json"].skip == "a sidecar with no image"


@pytest.mark.django_db
def test_a_legacy_tree_lands_in_its_albums_with_everything_it_knows(
    tree: LegacyTree, capsys: Any
) -> None:
    run = import_tree(tree)

    assert run.status == "succeeded", run.error
    albums = {a.name: a.images.count() for a in Album.objects.all()}
    assert albums == ALBUMS
    assert set(Album.objects.values_list("source_kind", flat=True)) == {"legacy"}
    seen = outcomes(run)
    # The same bytes in two folders: one image, in both albums (the walk is
    # sorted, so lora_tests/ comes first).
    assert seen["lora_tests/aries_again.png"] == "created"
    assert seen["zodiac_night/aries.png"] == "attached"
    assert seen["card_deck_antique/broken.png"] == "rejected"
    assert seen["escape.png"] == "rejected"
    assert seen["thumbnails/1.png"] == seen["README.md"] == "skipped"
    assert list(seen.values()).count("created") == 14
    assert Image.objects.filter(source_kind="legacy").count() == 14
    assert not Image.objects.filter(original_filename="secret.png").exists()

    # The sidecars: a recipe per generated image, their times and LoRAs.
    fox = ImportItem.objects.get(relative_path="20240312_101500_a_red_fox.png")
    recipe = ImageRecipe.objects.get(image=fox.image).recipe
    assert recipe == {
        "prompt": "a red fox in snow",
        "negative_prompt": "blurry",
        "base_model": "runwayml/stable-diffusion-v1-5",
        "loras": [
            {
                "name": "fox_style",
                "file": "fox_style.safetensors",
                "weight": 0.7,
                "sha256": "",
            },
        ],
        "seed": 42,
        "steps": 30,
        "guidance": 8.0,
        "width": 512,
        "height": 512,
        "source": "legacy sidecar",
    }
    assert (fox.made_at.isoformat(), fox.made_at_from) == (
        "2024-03-12T10:15:00+00:00",
        "sidecar",
    )
    moon = ImportItem.objects.get(relative_path="moon.png")
    assert [(x["name"], x["weight"]) for x in moon.image.recipe.recipe["loras"]] == [
        ("night", 0.5),
        ("ink", 0.3),
    ]
    broken = ImportItem.objects.get(relative_path="20240401-090000_broken_json.png")
    assert (broken.sidecar_status, broken.made_at_from) == ("malformed", "name")
    assert broken.reason == "sidecar is not JSON (JSONDecodeError)"
    assert not ImageRecipe.objects.filter(image=broken.image).exists()
    sketch = ImportItem.objects.get(relative_path="sketch.png")
    assert (sketch.sidecar_status, sketch.made_at_from) == ("missing", "mtime")
    assert sketch.reason == "no sidecar .json beside it"

    # The packs: captions from .txt files, unreviewed, picked by the rule.
    caption = Label.objects.get(image__legacy_items__relative_path="tarot_refs/t1.jpg")
    assert (caption.kind, caption.source, caption.review, caption.text) == (
        "caption",
        "legacy",
        "unreviewed",
        "The Magician, red robe",
    )
    assert Label.objects.filter(source="legacy").count() == 2

    out = capsys.readouterr().out
    assert "14 created, 0 near duplicates, 0 duplicates, 1 attached, 2 rejected" in out
    assert "album created: Decks/card-deck-antique" in out
    # Missing: every outputs image without one, the corrupt file's included.
    assert import_summary(run)["sidecars"] == {"ok": 5, "missing": 7, "malformed": 1}


@pytest.mark.django_db
def test_importing_the_same_tree_again_creates_nothing(tree: LegacyTree) -> None:
    first = import_tree(tree)
    before = (Image.objects.count(), Label.objects.count(), ImageRecipe.objects.count())

    again = import_tree(tree)

    assert import_summary(again)["images"]["created"] == 0
    assert again.message.startswith("0 created")
    assert (
        Image.objects.count(),
        Label.objects.count(),
        ImageRecipe.objects.count(),
    ) == before
    assert Album.objects.count() == len(ALBUMS)
    assert set(again.albums.values()) == {"reused"}
    assert set(outcomes(again).values()) == {"duplicate", "rejected", "skipped"}
    assert outcomes(first).keys() == outcomes(again).keys()


@pytest.mark.django_db
def test_a_dry_run_writes_only_its_run_and_items(tree: LegacyTree, capsys: Any) -> None:
    run = import_tree(tree, "--dry-run")

    assert (Album.objects.count(), Image.objects.count(), Label.objects.count()) == (
        0,
        0,
        0,
    )
    assert import_summary(run)["images"]["created"] == 14
    assert set(run.albums) == set(ALBUMS)
    assert set(run.albums.values()) == {"would create"}
    assert "album would create: Reference Packs/tarot-refs" in capsys.readouterr().out


@pytest.mark.django_db
def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match=r"sources\[0\]: not a folder"):
        call_command("import_legacy", str(tmp_path / "nope"))
    assert not ImportRun.objects.exists()


@pytest.mark.django_db
def test_a_sidecar_lora_is_matched_to_a_registered_one_by_file_name(
    tree: LegacyTree,
) -> None:
    from training.models import Lora

    Lora.objects.create(name="Fox_Style", file="loras/f.safetensors", sha256="f" * 64)
    Lora.objects.create(name="night", file="loras/n.safetensors", sha256="n" * 64)

    import_tree(tree)

    fox = ImportItem.objects.get(relative_path="20240312_101500_a_red_fox.png")
    moon = ImportItem.objects.get(relative_path="moon.png")
    assert [x["sha256"] for x in fox.image.recipe.recipe["loras"]] == ["f" * 64]
    assert [x["sha256"] for x in moon.image.recipe.recipe["loras"]] == ["n" * 64, ""]
