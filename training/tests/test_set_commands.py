"""manage.py generate_set, set_status and import_set_templates: sets rendered
on the tiny pipeline, their slots shown, and the old system's set config
imported."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from albums.models import Album, Image
from training.models import SetRun, SetSlot, SetTemplate
from training.sets.selectors import set_album_of, slot_statuses
from training.sets.services import (
    set_fill_missing,
    set_template_delete,
    set_template_preview,
    set_template_update,
    slot_seed,
)
from training.tests.builders import QUIET

pytestmark = [pytest.mark.django_db, QUIET]

FIXTURES = Path(__file__).parent / "fixtures" / "sets"
TINY = ("--width", "64", "--height", "64", "--steps", "2")


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def generate(*args: str) -> str:
    """generate_set on the zodiac into "Signs" at the tiny size."""
    out, _ = run_command("generate_set", "zodiac", "--album", "Signs", *TINY, *args)
    return out


def statuses() -> dict[str, str]:
    album = Album.objects.get(name="Signs")
    return {s.key: s.status for s in slot_statuses(set_album_of(album))}


# --- generate_set and set_status -------------------------------------------------


def test_three_slots_leave_nine_missing_and_only_missing_renders_exactly_them(
    gen_env: Path,
) -> None:
    out = generate("--slots", "leo,aries,pisces", "--theme", "Neon", "--seed", "5")

    assert "3 slot(s) of 'Zodiac' × 1 variant(s), theme 'Neon', set seed 5" in out
    assert "filled 3, missing 9, failed 0 of 12 slots" in out
    assert "3 slot(s): 3 image(s) made" in out
    filled = [k for k, s in statuses().items() if s == "filled"]
    assert filled == ["aries", "leo", "pisces"]
    status, _ = run_command("set_status", "Signs")
    assert status.splitlines()[-1] == "filled 3, missing 9, failed 0 of 12"
    first_images = set(Image.objects.values_list("id", flat=True))

    # No --seed, no --theme: the album's are kept.
    out = generate("--only-missing")

    fill = SetRun.objects.latest("id")
    assert (fill.status, fill.set_seed, fill.theme) == ("succeeded", 5, "Neon")
    assert len(fill.slot_keys) == 9 and len(fill.items_done) == 9
    assert not {"aries", "leo", "pisces"} & set(fill.slot_keys)
    assert "filled 12, missing 0, failed 0 of 12 slots" in out
    assert set(statuses().values()) == {"filled"}
    assert Image.objects.count() == 12
    # The first three slots keep their pictures.
    kept = {s.key: s.image_id for s in slot_statuses(fill.set_album)}
    assert {kept["aries"], kept["leo"], kept["pisces"]} == first_images
    with pytest.raises(CommandError, match="Every slot of 'Signs' asked for is filled"):
        generate("--only-missing")


def test_set_status_prints_each_slot_then_the_totals(gen_env: Path) -> None:
    generate("--slots", "aries", "--theme", "Neon", "--seed", "5")
    set_album = set_album_of(Album.objects.get(name="Signs"))
    SetSlot.objects.filter(set_album=set_album, key="taurus").update(
        error="ValueError: the GPU fell over"
    )
    [aries] = [s for s in slot_statuses(set_album) if s.key == "aries"]

    by_name, _ = run_command("set_status", "Signs")
    by_id, _ = run_command("set_status", str(set_album.album_id))

    assert by_name == by_id
    lines = by_name.splitlines()
    assert lines[:4] == [
        "'Signs': set 'zodiac', theme 'Neon', set seed 5",
        f"  1  aries        filled   image {aries.image_id:<6}  seed "
        f"{slot_seed(5, 'aries')}",
        "  2  taurus       failed   image -       seed -  "
        "error: ValueError: the GPU fell over",
        "  3  gemini       missing  image -       seed -",
    ]
    assert [line.split()[1] for line in lines[1:13]] == [
        row["key"] for row in set_album.template.rows
    ]
    assert lines[13:] == ["filled 1, missing 10, failed 1 of 12"]


def test_set_status_names_an_unknown_album_or_one_without_a_set(
    gen_env: Path,
) -> None:
    with pytest.raises(CommandError, match="No album named 'Nowhere'"):
        run_command("set_status", "Nowhere")
    Album.objects.create(name="Plain", slug="plain")
    with pytest.raises(CommandError, match="Album 'Plain' holds no set"):
        run_command("set_status", "Plain")


def test_enqueue_queues_the_run_without_rendering(
    gen_env: Path, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        out = generate("--slots", "aries,taurus", "--variants", "2", "--enqueue")

    run = SetRun.objects.get()
    assert (run.status, run.slot_keys, run.variants) == (
        "queued",
        ["aries", "taurus"],
        2,
    )
    assert len(callbacks) == 1  # the task, handed to the gpu cluster on commit
    assert out.splitlines()[-1] == (
        f"Queued set run #{run.pk} for the gpu worker; follow it at "
        f"/admin/training/setrun/{run.pk}/change/"
    )
    assert Image.objects.count() == 0
    assert set(statuses().values()) == {"missing"}


def test_bad_input_is_a_command_error_naming_each_option(gen_env: Path) -> None:
    with pytest.raises(CommandError) as caught:
        generate("--slots", "aries,ophiuchus", "--variants", "0")
    assert str(caught.value).splitlines() == [
        "--variants: from 1 to 8 (got 0)",
        "--slots: no slot ophiuchus in 'zodiac'",
    ]
    with pytest.raises(CommandError) as caught:
        generate("--lora", "nosuch:0.5")
    assert str(caught.value).startswith("--lora: ")
    assert "nosuch" in str(caught.value)
    with pytest.raises(CommandError, match=r"No set template 'runes' \(known: "):
        run_command("generate_set", "runes", "--album", "Signs")
    assert SetRun.objects.count() == 0


def test_a_refused_request_leaves_no_album_behind(gen_env: Path) -> None:
    with pytest.raises(CommandError, match="--variants"):
        run_command("generate_set", "zodiac", "--album", "Typo", "--variants", "0")
    assert not Album.objects.filter(name="Typo").exists()


def test_no_loras_overrides_a_template_lora_that_is_not_registered(
    gen_env: Path,
) -> None:
    zodiac = SetTemplate.objects.get(slug="zodiac")
    set_template_update(template=zodiac, loras=[{"name": "old-deck", "weight": 0.6}])
    with pytest.raises(CommandError, match="unknown LoRA 'old-deck'"):
        generate("--slots", "aries")
    with pytest.raises(CommandError, match="--no-loras and --lora"):
        generate("--no-loras", "--lora", "old-deck")

    generate("--slots", "aries", "--no-loras", "--enqueue")

    assert SetRun.objects.get().render["loras"] == []


def test_only_missing_takes_a_row_added_to_the_template_since(gen_env: Path) -> None:
    generate("--slots", "aries", "--theme", "Neon", "--seed", "5")
    zodiac = SetTemplate.objects.get(slug="zodiac")
    added = {"sign": "Ophiuchus", "emblem": "the serpent bearer"}
    set_template_update(template=zodiac, rows=[*zodiac.rows, {"values": added}])

    album = Album.objects.get(name="Signs")
    statuses = slot_statuses(set_album_of(album))
    assert (statuses[-1].key, statuses[-1].status) == ("ophiuchus", "missing")
    assert set_fill_missing(album=album, enqueue=False).slot_keys[-1] == "ophiuchus"

    generate("--only-missing", "--enqueue")

    assert SetRun.objects.latest("id").slot_keys[-1] == "ophiuchus"


# --- import_set_templates ----------------------------------------------------------


def test_the_old_sets_become_templates_and_a_second_import_skips_them() -> None:
    # The built-in zodiac shares the old set's slug; the next test covers that.
    set_template_delete(template=SetTemplate.objects.get(slug="zodiac"))

    out, _ = run_command("import_set_templates", str(FIXTURES / "config.yaml"))

    assert out.splitlines() == [
        "card_deck (card-deck): created, 3 slots",
        "zodiac (zodiac): created, 3 slots",
        "tarot_deck (tarot-deck): created, 3 slots",
        "3 set(s): 3 created",
    ]
    cards = SetTemplate.objects.get(slug="card-deck")
    assert (cards.name, cards.columns, cards.width, cards.height) == (
        "Card Deck Template",
        ["value", "suit"],
        512,
        720,
    )
    assert [(r["key"], r["label"]) for r in cards.rows] == [
        ("ace-of-spades", "Ace of Spades"),
        ("queen-of-hearts", "Queen of Hearts"),
        ("seven-of-clubs", "Seven of Clubs"),
    ]
    assert cards.loras == [{"name": "Card_Fronts-000008", "weight": 0.6}]
    assert cards.negative_prompt == "blurry, low quality"
    assert set_template_preview(cards, rows=1) == [
        {
            "key": "ace-of-spades",
            "label": "Ace of Spades",
            "prompt": "Playing card portrait. Art style: Antique Deck. Ace of Spades, "
            "ornate playing card. vintage engraving",
        }
    ]
    tarot = SetTemplate.objects.get(slug="tarot-deck")
    assert [r["label"] for r in tarot.rows] == [
        "The Fool",
        "The Magician",
        "The High Priestess",
    ]
    assert (tarot.prompt_template, tarot.style_suffix, tarot.example_theme) == (
        "{card} tarot card",
        "art nouveau",
        "Mystic Tarot",
    )
    zodiac = SetTemplate.objects.get(slug="zodiac")
    assert [r["key"] for r in zodiac.rows] == ["aries", "taurus", "gemini"]
    assert not zodiac.builtin

    again, _ = run_command("import_set_templates", str(FIXTURES / "config.yaml"))

    assert again.splitlines()[0] == (
        "card_deck (card-deck): skipped, template 'card-deck' exists (3 slots); "
        "--replace overwrites it"
    )
    assert again.splitlines()[-1] == "3 set(s): 3 skipped"
    assert SetTemplate.objects.filter(builtin=False).count() == 3


def test_replace_updates_existing_templates_built_in_ones_too() -> None:
    out, _ = run_command("import_set_templates", str(FIXTURES / "config.yaml"))
    assert "zodiac (zodiac): skipped, template 'zodiac' exists (built-in, 12 " in out
    cards = SetTemplate.objects.get(slug="card-deck")
    set_template_update(template=cards, style_suffix="watercolour", width=256)

    out, _ = run_command(
        "import_set_templates", str(FIXTURES / "config.yaml"), "--replace"
    )

    assert out.splitlines()[-1] == "3 set(s): 3 updated"
    cards.refresh_from_db()
    assert (cards.style_suffix, cards.width) == ("vintage engraving", 512)
    zodiac = SetTemplate.objects.get(slug="zodiac")
    assert (len(zodiac.rows), zodiac.prompt_template) == (3, "{sign} zodiac symbol")
    assert (zodiac.builtin, zodiac.edited) == (True, True)


def test_a_dry_run_checks_everything_and_writes_nothing() -> None:
    before = list(SetTemplate.objects.values_list("slug", "updated"))

    out, _ = run_command(
        "import_set_templates", str(FIXTURES / "config.yaml"), "--dry-run"
    )

    assert out.splitlines() == [
        "card_deck (card-deck): would be created, 3 slots",
        "zodiac (zodiac): would be skipped, template 'zodiac' exists (built-in, "
        "12 slots); --replace overwrites it",
        "tarot_deck (tarot-deck): would be created, 3 slots",
        "3 set(s): 2 created, 1 skipped; dry run, nothing was written",
    ]
    out, _ = run_command(
        "import_set_templates", str(FIXTURES / "config.yaml"), "--dry-run", "--replace"
    )
    assert "zodiac (zodiac): would be updated, 3 slots" in out
    assert list(SetTemplate.objects.values_list("slug", "updated")) == before


def test_a_broken_entry_is_reported_and_the_others_import(tmp_path: Path) -> None:
    # Laid out as the old repository was: data/sets/ with paths from its root.
    folder = tmp_path / "data" / "sets"
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "card_deck.csv", folder)
    (folder / "runes.csv").write_text("rune\nFehu\nUruz,Thurisaz\n")
    (folder / "config.yaml").write_text(
        "sets:\n"
        "  - id: card_deck\n"
        "    name: Cards\n"
        "    csv_path: data/sets/card_deck.csv\n"
        "    prompt_template: '{value} of {suit}'\n"
        "  - id: runes\n"
        "    name: Runes\n"
        "    csv_path: data/sets/runes.csv\n"
        "    prompt_template: '{rune} rune'\n"
    )

    with pytest.raises(CommandError) as caught:
        run_command("import_set_templates", str(folder / "config.yaml"))

    assert str(caught.value) == "Not imported: runes (see above)"
    cards = SetTemplate.objects.get(slug="card-deck")
    assert (cards.name, len(cards.rows)) == ("Cards", 3)
    assert not SetTemplate.objects.filter(slug="runes").exists()


def test_the_errors_of_a_broken_entry_name_each_field(tmp_path: Path) -> None:
    (tmp_path / "runes.csv").write_text("rune\nFehu\nUruz,Thurisaz\n")
    (tmp_path / "config.yaml").write_text(
        "runes:\n"
        "  name: Runes\n"
        "  csv_path: runes.csv\n"
        "  prompt_template: '{rune} rune'\n"
        "planets:\n"
        "  name: Planets\n"
        "  csv_path: planets.csv\n"
        "  prompt_template: '{planet}'\n"
        "  width: 100\n"
        "  loras: [{weight: 0.5}]\n"
    )
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "import_set_templates",
            str(tmp_path / "config.yaml"),
            stdout=out,
            stderr=err,
        )

    assert err.getvalue().splitlines() == [
        "runes (runes): failed",
        "    csv_path: runes.csv: line 3 has 2 cells; the header has 1",
        "planets (planets): failed",
        "    loras: {'weight': 0.5}: give a path or a name, and a weight",
        f"    csv_path: planets.csv not found in {tmp_path}, nor in the folder above "
        "it",
        "    width: a multiple of 8 from 64 to 1024 (got 100)",
    ]
    assert out.getvalue() == "2 set(s): 2 failed\n"


def test_an_unreadable_config_is_a_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="Cannot read"):
        run_command("import_set_templates", str(tmp_path / "missing.yaml"))
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(CommandError, match="holds no sets"):
        run_command("import_set_templates", str(tmp_path / "empty.yaml"))
