"""Set templates and set runs end to end on the tiny pipeline: the built-in
decks, slots and their statuses, fill-missing, regenerate, choosing a variant,
crash-resume and double delivery, cancel, and deleting a template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from albums.models import Album, AlbumImage, Image
from albums.services import album_remove_images, images_delete
from imagineer_project.errors import NotFound
from imagineer_project.runs import RunCancelled, run_request_cancel
from training.generation import runs as generation_runs
from training.models import ImageRecipe, SetRun, SetTemplate, SetVariant
from training.sets import runs as set_runs
from training.sets.selectors import set_album_of, slot_counts, slot_statuses
from training.sets.services import (
    NothingToRender,
    SetInvalid,
    SetRequest,
    TemplateInUse,
    set_fill_missing,
    set_run_create,
    set_slot_choose,
    set_slots_regenerate,
    set_template_create,
    set_template_delete,
    set_template_preview,
    set_template_update,
    slot_seed,
)
from training.sets.tasks import run_set
from training.tests.builders import QUIET

pytestmark = [pytest.mark.django_db, QUIET]

TINY = {"width": 64, "height": 64, "steps": 2, "guidance": 5.0}


def request(**overrides: Any) -> SetRequest:
    return SetRequest(
        **{"template": "zodiac", "theme": "Neon", "album": "Signs", "seed": 5, **TINY}
        | overrides
    )


def run(set_run: SetRun) -> SetRun:
    run_set(set_run.pk)
    set_run.refresh_from_db()
    return set_run


def statuses(album: Album) -> dict[str, str]:
    return {s.key: s.status for s in slot_statuses(set_album_of(album))}


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prompt of every image the generator renders (a spy on the real one)."""
    from training.ml import generate

    real, seen = generate.generate_images, []

    def spy(holder: Any, spec: Any, **kwargs: Any) -> Any:
        seen.append(spec.prompt)
        return real(holder, spec, **kwargs)

    monkeypatch.setattr(generate, "generate_images", spy)
    return seen


def test_the_built_in_templates_hold_whole_decks() -> None:
    counts = {
        t.slug: (len(t.rows), len({r["key"] for r in t.rows}))
        for t in SetTemplate.objects.filter(builtin=True)
    }
    assert counts == {"playing-cards": (54, 54), "tarot": (78, 78), "zodiac": (12, 12)}
    cards = SetTemplate.objects.get(slug="playing-cards")
    keys = [r["key"] for r in cards.rows]
    assert keys[:2] == ["ace-of-spades", "two-of-spades"]
    assert {"queen-of-hearts", "red-joker", "black-joker"} <= set(keys)
    tarot = SetTemplate.objects.get(slug="tarot")
    assert [r["label"] for r in tarot.rows[:2]] == ["The Fool", "The Magician"]
    assert tarot.rows[-1]["key"] == "king-of-pentacles"


def test_prompts_are_assembled_in_order_with_trigger_words_first() -> None:
    zodiac = SetTemplate.objects.get(slug="zodiac")
    [first] = set_template_preview(
        zodiac, theme="Neon", rows=1, loras=[{"trigger_words": ["zxq"]}]
    )
    assert first == {
        "key": "aries",
        "label": "Aries",
        "prompt": "zxq, Illustration of the zodiac sign. Art style: Neon. Aries zodiac "
        "symbol, the ram, fire sign, glyph ♈. celestial art, stars and "
        "constellations",
    }
    # Without a theme the "Art style" part is left out altogether.
    [plain] = set_template_preview(zodiac, theme="", rows=1)
    assert "Art style" not in plain["prompt"]


def test_a_template_is_checked_whole() -> None:
    with pytest.raises(SetInvalid) as caught:
        set_template_create(
            name="Bad",
            csv="card,key\nOne,same\nTwo,same\n",
            prompt_template="{card} with {colour}",
            width=100,
        )
    assert caught.value.errors == {
        "rows": "rows 1 and 2 have the same slot key 'same'",
        "prompt_template": "{colour} names no column (columns: card)",
        "width": "a multiple of 8 from 64 to 1024 (got 100)",
    }
    with pytest.raises(SetInvalid) as caught:
        set_template_create(name="Empty", csv="card\n", prompt_template="{card}")
    assert caught.value.errors == {"rows": "at least one row"}


def test_a_csv_template_gets_keys_and_labels_and_editing_a_builtin_marks_it() -> None:
    made = set_template_create(
        name="Gems",
        csv="gem,colour\nRuby,red\nSapphire,blue\n",
        prompt_template="a {colour} {gem}",
    )
    assert made.slug == "gems" and made.columns == ["gem", "colour"]
    assert [(r["key"], r["label"]) for r in made.rows] == [
        ("ruby", "Ruby"),
        ("sapphire", "Sapphire"),
    ]
    zodiac = SetTemplate.objects.get(slug="zodiac")
    set_template_update(template=zodiac, style_suffix="ink on paper")
    zodiac.refresh_from_db()
    assert (zodiac.builtin, zodiac.edited, zodiac.style_suffix) == (
        True,
        True,
        "ink on paper",
    )


def test_three_slots_leave_nine_missing_and_fill_missing_renders_exactly_them(
    gen_env: Path, renders: list[str]
) -> None:
    first = run(set_run_create(request=request(slots=["leo", "aries", "pisces"])))

    assert first.status == "succeeded", first.error
    assert (first.progress_done, first.progress_total) == (3, 3)
    assert len(renders) == 3
    album = Album.objects.get(name="Signs")
    slots = statuses(album)
    assert [k for k, s in slots.items() if s == "filled"] == ["aries", "leo", "pisces"]
    assert slot_counts(slot_statuses(set_album_of(album))) == {
        "filled": 3,
        "missing": 9,
        "failed": 0,
    }
    # The images land in the album in slot order, each with its recipe.
    order = list(
        AlbumImage.objects.filter(album=album)
        .order_by("position")
        .values_list("image__recipe__recipe__slot", flat=True)
    )
    assert order == ["aries", "leo", "pisces"]

    fill = run(set_fill_missing(album=album))
    assert fill.status == "succeeded", fill.error
    assert fill.mode == "fill" and len(fill.slot_keys) == 9
    assert len(renders) == 12
    assert set(statuses(album).values()) == {"filled"}
    with pytest.raises(NothingToRender):
        set_fill_missing(album=album)


def test_each_image_records_its_slot_seed_and_recipe(gen_env: Path) -> None:
    done = run(set_run_create(request=request(slots=["taurus"])))
    [slot] = [s for s in slot_statuses(done.set_album) if s.key == "taurus"]
    assert slot.seed == slot_seed(5, "taurus") and slot.image is not None
    recipe = slot.image.recipe.recipe
    assert (recipe["slot"], recipe["seed"], recipe["set_run_id"]) == (
        "taurus",
        slot_seed(5, "taurus"),
        done.pk,
    )
    assert recipe["prompt"] == slot.prompt
    assert "Art style: Neon. Taurus zodiac symbol" in recipe["prompt"]
    assert (recipe["width"], recipe["steps"], recipe["template"]) == (64, 2, "zodiac")


def test_the_same_slot_and_set_seed_give_the_same_bytes_and_regenerate_a_new_one(
    gen_env: Path,
) -> None:
    run(set_run_create(request=request(slots=["gemini"])))
    album = Album.objects.get(name="Signs")
    [before] = [s for s in slot_statuses(set_album_of(album)) if s.key == "gemini"]

    # Rendering the slot again with the same set seed makes the very same file.
    run(set_run_create(request=request(slots=["gemini"])))
    [again] = [s for s in slot_statuses(set_album_of(album)) if s.key == "gemini"]
    assert again.image.sha256 == before.image.sha256
    assert Image.objects.count() == 1

    regenerated = run(set_slots_regenerate(album=album, keys=["gemini"]))
    assert regenerated.set_seed != 5
    [after] = [s for s in slot_statuses(set_album_of(album)) if s.key == "gemini"]
    assert after.image.sha256 != before.image.sha256
    assert after.seed == slot_seed(regenerated.set_seed, "gemini")
    # The old picture stays in the album, unchosen, as the slot's other variant.
    assert [v.image_id for v in after.variants] == [before.image.pk, after.image.pk]
    assert AlbumImage.objects.filter(album=album).count() == 2

    chosen = set_slot_choose(album=album, key="gemini", image_id=before.image.pk)
    assert chosen.chosen.image_id == before.image.pk
    with pytest.raises(SetInvalid):
        set_slot_choose(album=album, key="aries", image_id=before.image.pk)


def test_variants_render_per_slot_and_the_first_fills_it(gen_env: Path) -> None:
    done = run(set_run_create(request=request(slots=["virgo", "libra"], variants=2)))
    assert done.status == "succeeded", done.error
    slots = {s.key: s for s in slot_statuses(done.set_album) if s.status == "filled"}
    assert set(slots) == {"virgo", "libra"}
    assert [len(s.variants) for s in slots.values()] == [2, 2]
    assert slots["virgo"].seed == slot_seed(5, "virgo", 0)
    assert {v.seed for v in slots["virgo"].variants} == {
        slot_seed(5, "virgo", 0),
        slot_seed(5, "virgo", 1),
    }


def test_a_removed_image_makes_its_slot_missing_again(gen_env: Path) -> None:
    done = run(set_run_create(request=request(slots=["cancer", "scorpio"])))
    album = done.set_album.album
    cancer, scorpio = (s for s in slot_statuses(done.set_album) if s.image)
    album_remove_images(album=album, image_ids=[cancer.image.pk])
    images_delete(images=[scorpio.image])
    assert statuses(album)["cancer"] == "missing"
    assert statuses(album)["scorpio"] == "missing"
    fill = set_fill_missing(album=album, enqueue=False)
    assert len(fill.slot_keys) == 12


def test_a_crash_resumes_and_a_second_delivery_renders_nothing_twice(
    gen_env: Path, renders: list[str]
) -> None:
    set_run = set_run_create(request=request(slots=["aries", "taurus", "gemini"]))

    class WorkerDied(Exception):
        pass

    def die_after_two(run: SetRun, image: Image) -> None:
        if len(run.items_done) == 2:
            raise WorkerDied

    with pytest.raises(WorkerDied):  # the body, as a worker that died mid-set ran it
        set_runs.set_run_execute(set_run, on_image=die_after_two)
    assert len(renders) == 2

    resumed = run(set_run)
    assert resumed.status == "succeeded", resumed.error
    assert len(renders) == 3
    run(set_run)  # delivered once more: not claimable, renders nothing
    assert len(renders) == 3
    assert Image.objects.count() == 3 and SetVariant.objects.count() == 3
    assert ImageRecipe.objects.count() == 3
    assert resumed.items_done == ["aries/0", "taurus/0", "gemini/0"]


def test_cancel_stops_within_a_step_and_keeps_what_was_made(
    gen_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generation_runs, "STOP_POLL_SECONDS", 0)
    set_run = set_run_create(request=request(slots=["aries", "taurus", "gemini"]))
    SetRun.objects.filter(pk=set_run.pk).update(status="running")
    set_run.refresh_from_db()

    def cancel_after_the_first(run: SetRun, image: Image) -> None:
        run_request_cancel(SetRun.objects.get(pk=run.pk))

    with pytest.raises(RunCancelled):
        set_runs.set_run_execute(set_run, on_image=cancel_after_the_first)
    set_run.refresh_from_db()
    assert set_run.items_done == ["aries/0"] and set_run.progress_done == 1
    assert statuses(set_run.set_album.album)["aries"] == "filled"


def test_a_slot_that_fails_is_marked_failed_and_the_rest_render(
    gen_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.ml import generate

    real = generate.generate_images

    def fail_on_taurus(holder: Any, spec: Any, **kwargs: Any) -> Any:
        if "Taurus" in spec.prompt:
            raise ValueError("the GPU fell over")
        return real(holder, spec, **kwargs)

    monkeypatch.setattr(generate, "generate_images", fail_on_taurus)
    done = run(set_run_create(request=request(slots=["aries", "taurus", "gemini"])))
    assert done.status == "succeeded" and done.failed_items == 1
    assert done.message.startswith("3 slot(s): 2 image(s) made, 1 failed")
    slots = {s.key: s for s in slot_statuses(done.set_album)}
    assert slots["taurus"].status == "failed"
    assert slots["taurus"].error == "ValueError: the GPU fell over"
    # Fill-missing takes failed slots too; a success clears the error.
    monkeypatch.setattr(generate, "generate_images", real)
    fill = run(set_fill_missing(album=done.set_album.album))
    assert fill.slot_keys[0] == "taurus" and "taurus" not in fill.slot_keys[1:]
    assert statuses(done.set_album.album)["taurus"] == "filled"


def test_requests_are_checked_whole(gen_env: Path) -> None:
    with pytest.raises(SetInvalid) as caught:
        set_run_create(
            request=request(slots=["aries", "ophiuchus"], steps=0, variants=20)
        )
    assert caught.value.errors == {
        "steps": "from 1 to 150 (got 0)",
        "variants": "from 1 to 8 (got 20)",
        "slots": "no slot ophiuchus in 'zodiac'",
    }
    with pytest.raises(SetInvalid) as caught:
        set_run_create(request=request(slots=["ophiuchus"]))
    assert caught.value.errors == {"slots": "no slot ophiuchus in 'zodiac'"}
    run(set_run_create(request=request(slots=["aries"])))
    with pytest.raises(SetInvalid) as caught:
        set_run_create(request=request(template="tarot"))
    assert "holds the set 'Zodiac'" in caught.value.errors["album"]


def test_a_template_with_runs_cannot_be_deleted(gen_env: Path) -> None:
    set_run_create(request=request(slots=["aries"]), enqueue=False)
    zodiac = SetTemplate.objects.get(slug="zodiac")
    with pytest.raises(TemplateInUse) as caught:
        set_template_delete(template=zodiac)
    assert "has 1 set run(s)" in caught.value.message
    assert SetTemplate.objects.filter(slug="zodiac").exists()
    unused = SetTemplate.objects.get(slug="tarot")
    set_template_delete(template=unused)
    assert not SetTemplate.objects.filter(slug="tarot").exists()


def test_the_contact_sheet_and_the_zip_match_the_slots(gen_env: Path) -> None:
    import csv
    import hashlib
    import io
    import zipfile

    from PIL import Image as PILImage

    from training.sets.sheet import contact_sheet, set_zip

    done = run(set_run_create(request=request(slots=["aries", "leo", "pisces"])))
    set_album = set_album_of(done.set_album.album)
    sheet = PILImage.open(io.BytesIO(contact_sheet(set_album))).convert("RGB")
    # 12 slots: 4 columns × 3 rows of 160 px cells with labels under them.
    assert sheet.size == (8 + 4 * 168, 36 + 8 + 3 * 190)

    def cell_pixel(index: int) -> tuple[int, int, int]:
        x = 8 + (index % 4) * 168 + 20  # off the placeholder's word
        y = 36 + 8 + (index // 4) * 190 + 20
        return sheet.getpixel((x, y))

    missing = (222, 219, 212)
    assert cell_pixel(1) == missing  # taurus
    slots = slot_statuses(set_album)
    aries = slots[0]
    with aries.image.file.open("rb") as handle:
        expected = PILImage.open(handle).convert("RGB").resize((160, 160))
    assert cell_pixel(0) == expected.getpixel((20, 20))

    visitors = PILImage.open(io.BytesIO(contact_sheet(set_album, show_missing=False)))
    assert visitors.size == (8 + 2 * 168, 36 + 8 + 2 * 190)  # 3 slots: 2 × 2

    archive = zipfile.ZipFile(set_zip(set_album))
    assert sorted(archive.namelist()) == [
        "aries.png",
        "contact-sheet.png",
        "leo.png",
        "pisces.png",
        "slots.csv",
    ]
    by_key = {s.key: s for s in slots}
    for key in ("aries", "leo", "pisces"):
        data = archive.read(f"{key}.png")
        assert hashlib.sha256(data).hexdigest() == by_key[key].image.sha256
    table = list(csv.DictReader(io.StringIO(archive.read("slots.csv").decode())))
    assert [row["key"] for row in table] == [s.key for s in slots]
    assert table[0] == {
        "position": "1",
        "key": "aries",
        "label": "Aries",
        "status": "filled",
        "file": "aries.png",
        "prompt": aries.prompt,
        "seed": str(slot_seed(5, "aries")),
        "sha256": aries.image.sha256,
    }
    assert table[1]["status"] == "missing" and table[1]["sha256"] == ""


def test_slot_keys_the_slot_api_uses_are_refused_and_digit_slugs_are_found() -> None:
    with pytest.raises(SetInvalid) as caught:
        set_template_create(
            name="Odd", csv="key,word\nexport,x\n", prompt_template="{word}"
        )
    assert caught.value.errors == {
        "rows": "row 1: 'export' is a reserved word; choose another key"
    }
    made = set_template_create(
        name="Year", slug="2024", csv="word\nspring\n", prompt_template="{word}"
    )
    from training.sets.services import set_template_get

    assert set_template_get("2024") == made
    assert set_template_get(str(made.pk)) == made
    with pytest.raises(NotFound):
        set_template_get("²")


def test_the_run_says_when_prompts_run_past_the_models_tokens(gen_env: Path) -> None:
    # The tiny model's tokenizer reads bytes: the zodiac's prompts are too long.
    long = run(set_run_create(request=request(slots=["aries"])))
    assert long.message == (
        "1 slot(s): 1 image(s) made; the prompts of 1 slot(s) (aries first) were "
        "cut at the model's 77 tokens"
    )
    set_template_create(name="Gems", csv="gem\nRuby\nJet\n", prompt_template="{gem}")
    short = run(set_run_create(request=request(template="gems", album="Gems")))
    assert short.message == "2 slot(s): 2 image(s) made"
