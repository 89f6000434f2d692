"""The set pages: the template editor (table, CSV paste, preview, errors on
their fields), "Generate set", a set run's page, the set album's slot grid
with its actions and downloads, and the public album page."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from albums.models import Album, Visibility
from albums.services import image_update
from imagineer_project.testing import admin_listed, query_count
from training.models import SetRun, SetTemplate
from training.sets.selectors import slot_statuses
from training.sets.services import SetRequest, set_run_create, set_template_create
from training.sets.tasks import run_set
from training.tests.builders import QUIET

pytestmark = [pytest.mark.django_db, QUIET]

TINY = {"width": 64, "height": 64, "steps": 2, "guidance": 5.0}


def made_set(slots: tuple[str, ...] = ("aries", "leo"), **overrides: Any) -> Any:
    request = SetRequest(
        **{
            "template": "zodiac",
            "theme": "Neon",
            "album": "Signs",
            "seed": 5,
            "slots": slots,
            **TINY,
            **overrides,
        }
    )
    run = set_run_create(request=request, enqueue=False)
    run_set(run.pk)
    run.refresh_from_db()
    return run


def editor_post(template: SetTemplate, **changes: Any) -> dict[str, Any]:
    """The editor's form as a browser posts it, with `changes`."""
    data: dict[str, Any] = {
        "name": template.name,
        "slug": template.slug,
        "description": template.description,
        "columns_text": ", ".join(template.columns),
        "csv": "",
        "lora_text": "",
        "base_prompt": template.base_prompt,
        "prompt_template": template.prompt_template,
        "style_suffix": template.style_suffix,
        "example_theme": template.example_theme,
        "negative_prompt": template.negative_prompt,
        "width": template.width,
        "height": template.height,
        "base_model": template.base_model,
        "rows_table-count": len(template.rows),
    }
    for i, row in enumerate(template.rows):
        data[f"rows_table-{i}-key"] = row["key"]
        data[f"rows_table-{i}-label"] = row["label"]
        for column, value in row["values"].items():
            data[f"rows_table-{i}-{column}"] = value
    return {**data, **changes}


def test_the_template_list_searches_and_costs_the_same_for_more(
    admin_client: Any,
) -> None:
    url = "/admin/training/settemplate/"
    listed = admin_listed(admin_client.get(url))
    assert len(listed) == 3
    zodiac = SetTemplate.objects.get(slug="zodiac")
    assert admin_listed(admin_client.get(url + "?q=zodiac")) == [zodiac.pk]
    few = query_count(admin_client, url)
    set_template_create(name="Gems", csv="gem\nRuby\n", prompt_template="a {gem}")
    assert query_count(admin_client, url) == few


def test_the_editor_shows_the_rows_as_a_table_and_a_preview(
    admin_client: Any,
) -> None:
    zodiac = SetTemplate.objects.get(slug="zodiac")
    page = admin_client.get(f"/admin/training/settemplate/{zodiac.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'name="rows_table-11-sign" value="Pisces"' in html
    assert "Illustration of the zodiac sign. Art style: Night Sky. Aries zodiac" in html
    assert "/admin/training/setrun/add/?template=zodiac" in html


def test_editing_a_cell_in_the_table_saves_it_and_marks_a_builtin_edited(
    admin_client: Any,
) -> None:
    zodiac = SetTemplate.objects.get(slug="zodiac")
    url = f"/admin/training/settemplate/{zodiac.pk}/change/"
    data = editor_post(zodiac, **{"rows_table-0-emblem": "a golden ram"})
    data["rows_table-12-sign"] = "Ophiuchus"  # a blank row filled in: a new slot
    data["rows_table-count"] = 15
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    zodiac.refresh_from_db()
    assert zodiac.rows[0]["values"]["emblem"] == "a golden ram"
    assert zodiac.rows[-1]["key"] == "ophiuchus" and len(zodiac.rows) == 13
    assert zodiac.edited


def test_a_pasted_csv_replaces_the_table_and_bad_input_is_shown_on_its_field(
    admin_client: Any,
) -> None:
    add = "/admin/training/settemplate/add/"
    empty = SetTemplate(name="")
    bad = admin_client.post(
        add,
        editor_post(
            empty,
            name="Gems",
            csv="gem,shade\nRuby,red\nSapphire,blue\n",
            prompt_template="a {colour} {gem}",
        ),
    )
    assert bad.status_code == 200
    assert bad.context["adminform"].form.errors == {
        "prompt_template": ["{colour} names no column (columns: gem, shade)."]
    }
    good = admin_client.post(
        add,
        editor_post(
            empty,
            name="Gems",
            csv="gem,shade\nRuby,red\nSapphire,blue\n",
            prompt_template="a {shade} {gem}",
        ),
    )
    assert good.status_code == 302
    gems = SetTemplate.objects.get(slug="gems")
    assert [r["key"] for r in gems.rows] == ["ruby", "sapphire"]
    assert gems.created_by is not None and not gems.builtin
    download = admin_client.get(f"/admin/training/settemplate/{gems.pk}/csv/")
    assert download["Content-Disposition"] == 'attachment; filename="gems.csv"'
    assert download.content.decode() == (
        "key,label,gem,shade\nruby,Ruby,Ruby,red\nsapphire,Sapphire,Sapphire,blue\n"
    )


def test_generate_set_shows_the_prompts_and_queues_a_run(
    admin_client: Any, gen_env: Path
) -> None:
    add = "/admin/training/setrun/add/"
    page = admin_client.get(add + "?template=tarot").content.decode()
    assert "Prompts of Tarot (78 slots)" in page
    assert "Art style: Mystic Tarot. The Fool tarot card" in page
    form = {
        "template": "zodiac",
        "theme": "Neon",
        "album": "Signs",
        "loras": "",
        "insert_trigger_words": "on",
        "seed": "5",
        "variants": "1",
        "slots": "aries, leo",
        "steps": "2",
        "guidance": "5",
        "scheduler": "ddim",
        "width": "64",
        "height": "64",
        "negative_prompt": "",
        "base_model": "",
    }
    bad = admin_client.post(add, {**form, "slots": "aries, ophiuchus"})
    assert bad.status_code == 200
    assert "No slot ophiuchus in &#x27;zodiac&#x27;." in bad.content.decode()
    response = admin_client.post(add, form)
    run = SetRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/training/setrun/{run.pk}/change/"
    assert run.slot_keys == ["aries", "leo"] and run.status == "queued"


def test_the_run_page_shows_the_set_as_it_grows(
    admin_client: Any, gen_env: Path
) -> None:
    run = made_set()
    page = admin_client.get(f"/admin/training/setrun/{run.pk}/change/")
    html = page.content.decode()
    assert "2 filled, 10 missing, 0 failed" in html
    assert html.count('class="slot slot-missing"') == 10
    assert 'name="_save"' not in html  # a run's page is read-only


def test_the_set_album_page_fills_regenerates_and_chooses(
    admin_client: Any, gen_env: Path
) -> None:
    run = made_set()
    set_album = run.set_album
    url = f"/admin/training/setalbum/{set_album.pk}/"
    page = admin_client.get(url + "change/").content.decode()
    assert "Fill missing slots (10)" in page and 'value="aries"' in page

    assert admin_client.post(url + "fill/").status_code == 302
    fill = SetRun.objects.get(mode="fill")
    assert len(fill.slot_keys) == 10

    admin_client.post(url + "regenerate/", {"slot": ["leo"]})
    regenerate = SetRun.objects.get(mode="regenerate")
    assert regenerate.slot_keys == ["leo"] and regenerate.set_seed != 5
    run_set(regenerate.pk)
    slots = {s.key: s for s in slot_statuses(set_album)}
    old, new = (v.image_id for v in slots["leo"].variants)
    assert slots["leo"].image_id == new

    admin_client.post(url + "choose/", {"slot": "leo", "image_id": str(old)})
    assert {s.key: s for s in slot_statuses(set_album)}["leo"].image_id == old
    refused = admin_client.post(
        url + "choose/", {"slot": "aries", "image_id": str(old)}, follow=True
    )
    assert "was not rendered for &#x27;aries&#x27;" in refused.content.decode()


def test_the_contact_sheet_and_the_zip_download(
    admin_client: Any, gen_env: Path
) -> None:
    set_album = made_set().set_album
    url = f"/admin/training/setalbum/{set_album.pk}/"
    sheet = admin_client.get(url + "sheet.png/?download=1")
    assert sheet["Content-Type"] == "image/png"
    assert "signs-contact-sheet.png" in sheet["Content-Disposition"]
    assert PILImage.open(io.BytesIO(sheet.content)).size == (680, 614)
    export = admin_client.get(url + "export.zip/")
    assert "signs.zip" in export["Content-Disposition"]
    names = zipfile.ZipFile(io.BytesIO(b"".join(export.streaming_content))).namelist()
    assert sorted(names) == [
        "aries.png",
        "contact-sheet.png",
        "leo.png",
        "slots.csv",
    ]


def test_the_public_album_page_hides_missing_slots_from_visitors(
    client: Any, admin_client: Any, gen_env: Path, settings: Any
) -> None:
    settings.GENERATED_VISIBILITY = "public"  # visitors see it (private by default)
    set_album = made_set(("aries", "leo", "virgo")).set_album
    album = Album.objects.get(name="Signs")
    virgo = {s.key: s for s in slot_statuses(set_album)}["virgo"]
    image_update(image=virgo.image, visibility=Visibility.PRIVATE)

    visitor = client.get(f"/albums/{album.slug}/").content.decode()
    assert "Zodiac · Neon" in visitor
    assert 'id="slot-aries"' in visitor and 'id="slot-leo"' in visitor
    assert 'id="slot-virgo"' not in visitor  # private to staff
    assert 'id="slot-taurus"' not in visitor  # missing

    staff = admin_client.get(f"/albums/{album.slug}/").content.decode()
    assert "3 of 12 slots filled" in staff
    assert staff.count('class="slot slot-missing"') == 9
