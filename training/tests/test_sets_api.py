"""The sets API on the tiny pipeline: set templates (CRUD, CSV, preview),
generating a set and watching its run, the slots of a set album (fill-missing,
regenerate, choosing a variant), the contact sheet and the zip, the rate
limit, cancel, staff only, and the OpenAPI schema."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from albums.models import Album, AlbumImage
from albums.tests.builders import make_album
from training.models import SetRun, SetTemplate
from training.sets.services import slot_seed
from training.sets.tasks import run_set
from training.tests.builders import QUIET, SMALL

pytestmark = [pytest.mark.django_db, QUIET]

GEMS_CSV = "gem,colour\nRuby,red\nSapphire,blue\n"
GEMS_ROWS = [
    {"key": "ruby", "label": "Ruby", "values": {"gem": "Ruby", "colour": "red"}},
    {
        "key": "sapphire",
        "label": "Sapphire",
        "values": {"gem": "Sapphire", "colour": "blue"},
    },
]


def send(client: Any, method: str, path: str, body: Any = None) -> Any:
    call = getattr(client, method)
    if body is None:
        return call(path)
    return call(path, json.dumps(body), content_type="application/json")


def zodiac() -> SetTemplate:
    return SetTemplate.objects.get(slug="zodiac")


def generate(client: Any, **fields: Any) -> Any:
    body = {"theme": "Neon", "album": "Signs", "seed": 5, **SMALL, **fields}
    return send(client, "post", f"/api/set-templates/{zodiac().pk}/generate", body)


def run(response: Any) -> int:
    """Run the set run a 202 points at inline; its id."""
    assert response.status_code == 202, response.json()
    run_id = int(response["Location"].rsplit("/", 1)[1])
    run_set(run_id)
    return run_id


def stamped(body: dict[str, Any], *names: str) -> dict[str, Any]:
    """`body` without its timestamps (checked to be there)."""
    for name in names:
        assert name in body, name
    return {k: v for k, v in body.items() if k not in names}


def signs() -> Album:
    return Album.objects.get(name="Signs")


# --- who may call ---------------------------------------------------------------


@pytest.mark.parametrize(("kind", "status"), [("anon", 401), ("user", 403)])
def test_staff_only(call_as: Any, kind: str, status: int) -> None:
    client = call_as(kind)
    album = make_album(name="Plain")
    calls = [
        ("get", "/api/set-templates"),
        ("post", "/api/set-templates"),
        ("get", f"/api/set-templates/{zodiac().pk}"),
        ("post", f"/api/set-templates/{zodiac().pk}/generate"),
        ("get", "/api/set-runs"),
        ("get", f"/api/albums/{album.pk}/slots"),
        ("get", f"/api/albums/{album.pk}/slots/contact-sheet"),
        ("post", f"/api/albums/{album.pk}/slots/fill-missing"),
    ]
    body = {m: {} if m == "post" else None for m, _ in calls}
    answers = {path: send(client, m, path, body[m]).status_code for m, path in calls}
    assert answers == {path: status for _, path in calls}


# --- templates ------------------------------------------------------------------


def test_a_template_round_trip_with_csv_in_and_out(call_as: Any) -> None:
    client = call_as("token")
    made = send(
        client,
        "post",
        "/api/set-templates",
        {
            "name": "Gems",
            "columns": ["gem", "colour"],
            "rows": [{"gem": "Ruby", "colour": "red"}, GEMS_ROWS[1]],
            "prompt_template": "a {colour} {gem}",
            "example_theme": "Watercolour",
            "width": 64,
            "height": 96,
            "loras": [{"name": "blocks", "weight": 0.5}],
        },
    )
    assert made.status_code == 201, made.json()
    template_id = made.json()["id"]
    expected = {
        "id": template_id,
        "slug": "gems",
        "name": "Gems",
        "description": "",
        "columns": ["gem", "colour"],
        "builtin": False,
        "edited": False,
        "example_theme": "Watercolour",
        "width": 64,
        "height": 96,
        "slot_count": 2,
        "run_count": 0,
        "base_prompt": "",
        "prompt_template": "a {colour} {gem}",
        "style_suffix": "",
        "negative_prompt": "",
        "base_model": "",
        "rows": GEMS_ROWS,
        "loras": [{"name": "blocks", "weight": 0.5}],
    }
    assert stamped(made.json(), "created", "updated") == expected
    detail = client.get(f"/api/set-templates/{template_id}").json()
    assert stamped(detail, "created", "updated") == expected
    assert client.get("/api/set-templates/gems").json()["id"] == template_id

    listed = client.get("/api/set-templates").json()
    assert listed["next_cursor"] is None
    assert [t["slug"] for t in listed["items"]] == [
        "playing-cards",
        "tarot",
        "zodiac",
        "gems",
    ]
    assert listed["items"][-1] == {
        k: v
        for k, v in expected.items()
        if k not in ("base_prompt", "prompt_template", "style_suffix")
        and k not in ("negative_prompt", "base_model", "rows", "loras")
    }

    changed = send(
        client,
        "patch",
        f"/api/set-templates/{template_id}",
        {"description": "Precious stones", "csv": GEMS_CSV + "Emerald,green\n"},
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["description"] == "Precious stones"
    assert [r["key"] for r in changed.json()["rows"]] == ["ruby", "sapphire", "emerald"]
    assert changed.json()["slot_count"] == 3 and changed.json()["name"] == "Gems"

    exported = client.get(f"/api/set-templates/{template_id}/csv")
    assert exported.status_code == 200
    assert exported["Content-Type"].startswith("text/csv")
    assert exported["Content-Disposition"] == 'attachment; filename="gems.csv"'
    assert exported.content.decode() == (
        "key,label,gem,colour\n"
        "ruby,Ruby,Ruby,red\n"
        "sapphire,Sapphire,Sapphire,blue\n"
        "emerald,Emerald,Emerald,green\n"
    )
    # The export, sent back as `csv`, makes the same table.
    copy = send(
        client,
        "post",
        "/api/set-templates",
        {
            "name": "Gems again",
            "csv": exported.content.decode(),
            "prompt_template": "a {colour} {gem}",
        },
    )
    assert copy.status_code == 201, copy.json()
    assert copy.json()["slug"] == "gems-again"
    assert copy.json()["rows"] == changed.json()["rows"]
    assert (copy.json()["width"], copy.json()["height"]) == (512, 512)

    assert client.delete(f"/api/set-templates/{template_id}").status_code == 204
    gone = client.get(f"/api/set-templates/{template_id}")
    assert gone.status_code == 404
    assert gone.json()["error"].startswith(f"No set template '{template_id}' (known: ")


def test_a_bad_template_is_422_naming_each_field(call_as: Any) -> None:
    client = call_as("token")
    response = send(
        client,
        "post",
        "/api/set-templates",
        {
            "csv": "card,key\nOne,same\nTwo,same\n",
            "prompt_template": "{card} with {colour}",
            "width": 100,
            "loras": [{"name": "blocks", "weight": 0.5}],
        },
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error_code"] == "set_invalid"
    assert body["details"] == {
        "errors": {
            "name": "a name is required",
            "slug": "lower-case letters and digits joined by '-' (e.g. 'tarot')",
            "rows": "rows 1 and 2 have the same slot key 'same'",
            "prompt_template": "{colour} names no column (columns: card)",
            "width": "a multiple of 8 from 64 to 1024 (got 100)",
        }
    }
    taken = send(
        client,
        "patch",
        f"/api/set-templates/{zodiac().pk}",
        {"slug": "tarot", "columns": [], "height": None},
    )
    assert taken.status_code == 422
    assert taken.json()["details"]["errors"] == {
        "slug": "another template is already called 'tarot'",
        "columns": "at least one column",
        "height": "a multiple of 8 from 64 to 1024 (got None)",
    }
    assert zodiac().edited is False  # nothing was written
    # A wrong type is the schema's 422, with pydantic's list.
    typed = send(client, "post", "/api/set-templates", {"name": "X", "width": "wide"})
    assert typed.status_code == 422
    assert typed.json()["error_code"] == "validation_error"
    assert typed.json()["details"]["errors"][0]["loc"][-1] == "width"


def test_a_template_with_runs_is_409_one_without_is_deleted(
    call_as: Any, gen_env: Path
) -> None:
    client = call_as("token")
    assert generate(client, slots=["aries"]).status_code == 202
    blocked = client.delete(f"/api/set-templates/{zodiac().pk}")
    assert blocked.status_code == 409
    assert stamped(blocked.json(), "trace_id", "timestamp") == {
        "error": "Template 'Zodiac' has 1 set run(s) and 1 set album(s); it is "
        "what they were made from, so it stays. Copy it under a new name to "
        "change it freely.",
        "error_code": "template_in_use",
        "details": {},
    }
    assert SetTemplate.objects.filter(slug="zodiac").exists()
    assert client.delete("/api/set-templates/tarot").status_code == 204
    assert not SetTemplate.objects.filter(slug="tarot").exists()


def test_the_preview_shows_the_first_prompts_with_the_theme(
    call_as: Any, loras: tuple[Any, Any]
) -> None:
    client = call_as("token")
    path = f"/api/set-templates/{zodiac().pk}/preview"
    neon = client.get(path, {"theme": "Neon"}).json()
    assert [p["key"] for p in neon] == ["aries", "taurus", "gemini", "cancer", "leo"]
    assert neon[0] == {
        "key": "aries",
        "label": "Aries",
        "prompt": "Illustration of the zodiac sign. Art style: Neon. Aries zodiac "
        "symbol, the ram, fire sign, glyph ♈. celestial art, stars and "
        "constellations",
    }
    example = client.get(path).json()[0]["prompt"]
    assert "Art style: Night Sky." in example
    words = client.get(path, {"theme": "Neon", "loras": "inverse, blocks"}).json()
    assert words[0]["prompt"] == "qqv, blk, zxq, " + neon[0]["prompt"]
    unknown = client.get(path, {"loras": "blocks,nope"})
    assert unknown.status_code == 422
    assert unknown.json()["details"]["errors"] == {"loras": "unknown LoRA nope"}


# --- generating a set and its slots ---------------------------------------------


def test_a_set_generates_and_three_slots_leave_nine_missing(
    call_as: Any, gen_env: Path
) -> None:
    client = call_as("token")
    queued = generate(client, slots=["leo", "aries", "pisces"])
    assert queued.status_code == 202, queued.json()
    set_run = SetRun.objects.get()
    assert queued["Location"] == f"/api/set-runs/{set_run.pk}"
    assert queued.json()["status"] == "queued" and queued.json()["percent"] == 0

    run(queued)
    album = signs()
    body = client.get(f"/api/set-runs/{set_run.pk}").json()
    slots = {s.key: s for s in set_run.set_album.slots.select_related("chosen")}
    assert stamped(body, "created", "started_at", "finished_at") == {
        "id": set_run.pk,
        "status": "succeeded",
        "percent": 100,
        "progress_done": 3,
        "progress_total": 3,
        # The tiny model's byte tokenizer finds the zodiac's prompts long.
        "message": "3 slot(s): 3 image(s) made; the prompts of 3 slot(s) (aries "
        "first) were cut at the model's 77 tokens",
        "error": "",
        "cancel_requested": False,
        "mode": "set",
        "template": {"id": zodiac().pk, "slug": "zodiac", "name": "Zodiac"},
        "album": {"id": album.pk, "slug": album.slug, "name": "Signs"},
        "theme": "Neon",
        "set_seed": 5,
        "variants": 1,
        "slot_keys": ["aries", "leo", "pisces"],
        "items_done": ["aries/0", "leo/0", "pisces/0"],
        "failed_items": 0,
        "current_slot": "pisces",
        "current_step": SetRun.objects.get().current_step,  # as last reported
        "steps": 2,
        "slots": [
            {
                "key": key,
                "label": key.title(),
                "status": "filled",
                "done": True,
                "image_id": slots[key].chosen.image_id,
                "seed": slot_seed(5, key),
                "thumbnail_url": f"/api/images/{slots[key].chosen.image_id}/thumbnail",
                "error": "",
            }
            for key in ("aries", "leo", "pisces")
        ],
    }
    listed = client.get("/api/set-runs").json()["items"]
    assert [r["id"] for r in listed] == [set_run.pk]
    assert listed[0] == {k: v for k, v in body.items() if k != "slots"}

    table = client.get(f"/api/albums/{album.pk}/slots").json()
    assert [s["key"] for s in table] == [r["key"] for r in zodiac().rows]
    assert [s["status"] for s in table].count("missing") == 9
    aries = slots["aries"].chosen
    assert table[0] == {
        "key": "aries",
        "label": "Aries",
        "position": 0,
        "prompt": aries.prompt,
        "status": "filled",
        "image_id": aries.image_id,
        "seed": slot_seed(5, "aries"),
        "thumbnail_url": f"/api/images/{aries.image_id}/thumbnail",
        "error": "",
        "in_template": True,
        "variants": [
            {
                "image_id": aries.image_id,
                "seed": slot_seed(5, "aries"),
                "thumbnail_url": f"/api/images/{aries.image_id}/thumbnail",
            }
        ],
    }
    assert "Art style: Neon. Aries zodiac symbol" in aries.prompt
    assert table[1] == {
        "key": "taurus",
        "label": "Taurus",
        "position": 1,
        "prompt": "",
        "status": "missing",
        "image_id": None,
        "seed": None,
        "thumbnail_url": None,
        "error": "",
        "in_template": True,
        "variants": [],
    }
    # The album is found by slug as well.
    assert client.get(f"/api/albums/{album.slug}/slots").json() == table


def test_fill_missing_regenerate_and_choosing_the_old_image_back(
    call_as: Any, gen_env: Path
) -> None:
    client = call_as("token")
    run(generate(client, slots=["leo", "aries", "pisces"]))
    album = signs()
    base = f"/api/albums/{album.pk}/slots"

    fill = client.post(f"{base}/fill-missing")
    assert fill.status_code == 202 and fill.json()["mode"] == "fill"
    assert fill["Location"] == f"/api/set-runs/{fill.json()['id']}"
    assert len(fill.json()["slot_keys"]) == 9
    run(fill)
    assert {s["status"] for s in client.get(base).json()} == {"filled"}
    nothing = client.post(f"{base}/fill-missing")
    assert nothing.status_code == 409
    assert nothing.json()["error_code"] == "nothing_to_render"
    assert nothing.json()["error"] == "Every slot of 'Signs' is filled."

    before = client.get(base).json()[4]
    assert before["key"] == "leo"
    again = send(client, "post", f"{base}/leo/regenerate", {"seed": 99})
    assert again.status_code == 202, again.json()
    assert (again.json()["mode"], again.json()["set_seed"]) == ("regenerate", 99)
    assert again.json()["slot_keys"] == ["leo"]
    run(again)
    after = client.get(base).json()[4]
    assert after["image_id"] != before["image_id"]
    assert after["seed"] == slot_seed(99, "leo")
    assert [v["image_id"] for v in after["variants"]] == [
        before["image_id"],
        after["image_id"],
    ]
    # The old image stays in the album, unchosen.
    assert AlbumImage.objects.filter(album=album, image_id=before["image_id"]).exists()

    chosen = send(client, "put", f"{base}/leo", {"image_id": before["image_id"]})
    assert chosen.status_code == 200, chosen.json()
    picked = ("image_id", "seed", "thumbnail_url", "prompt")
    assert chosen.json() == {**after, **{k: before[k] for k in picked}}
    assert client.get(base).json()[4] == chosen.json()

    wrong = send(client, "put", f"{base}/aries", {"image_id": before["image_id"]})
    assert wrong.status_code == 422
    assert list(wrong.json()["details"]["errors"]) == ["image_id"]
    assert send(client, "put", f"{base}/nope", {"image_id": 1}).status_code == 404
    # No body at all: a new random seed.
    unknown = client.generic("POST", f"{base}/ophiuchus/regenerate")
    assert unknown.status_code == 422
    assert unknown.json()["details"]["errors"] == {"slots": "no slot ophiuchus"}


def test_the_contact_sheet_and_the_export(call_as: Any, gen_env: Path) -> None:
    client = call_as("token")
    run(generate(client, slots=["leo", "aries", "pisces"]))
    album = signs()

    sheet = client.get(f"/api/albums/{album.pk}/slots/contact-sheet")
    assert sheet.status_code == 200 and sheet["Content-Type"] == "image/png"
    # 12 slots of 160 px cells: 4 columns × 3 rows, labels under them.
    assert PILImage.open(io.BytesIO(sheet.content)).size == (680, 614)
    filled = client.get(f"/api/albums/{album.pk}/slots/contact-sheet?missing=false")
    assert PILImage.open(io.BytesIO(filled.content)).size == (344, 424)  # 2 × 2

    export = client.get(f"/api/albums/{album.pk}/slots/export")
    assert export.status_code == 200 and export["Content-Type"] == "application/zip"
    assert export["Content-Disposition"] == f'attachment; filename="{album.slug}.zip"'
    archive = zipfile.ZipFile(io.BytesIO(b"".join(export.streaming_content)))
    assert sorted(archive.namelist()) == [
        "aries.png",
        "contact-sheet.png",
        "leo.png",
        "pisces.png",
        "slots.csv",
    ]


def test_an_album_without_a_set_is_404_saying_so(call_as: Any) -> None:
    album = make_album(name="Plain")
    client = call_as("token")
    for path in ("", "/contact-sheet", "/export"):
        response = client.get(f"/api/albums/{album.pk}/slots{path}")
        assert response.status_code == 404
        assert response.json()["error"] == (
            "Album 'Plain' holds no set; generate a set into it first."
        )
    assert client.get("/api/albums/4242/slots").status_code == 404


def test_a_bad_request_is_422_naming_each_field(call_as: Any, gen_env: Path) -> None:
    response = generate(
        call_as("token"), slots=["aries", "ophiuchus"], steps=0, variants=20
    )
    assert response.status_code == 422
    assert response.json()["error_code"] == "set_invalid"
    assert response.json()["details"]["errors"] == {
        "steps": "from 1 to 150 (got 0)",
        "variants": "from 1 to 8 (got 20)",
        "slots": "no slot ophiuchus in 'zodiac'",
    }
    assert not SetRun.objects.exists() and not Album.objects.exists()
    missing = send(call_as("token"), "post", "/api/set-templates/nope/generate", {})
    assert missing.status_code == 404


def test_the_rate_limit_counts_every_image(
    call_as: Any, gen_env: Path, settings: Any
) -> None:
    settings.GENERATION_RATE_LIMIT = "5/hour"
    settings.GENERATION_RATE_LIMIT_EXEMPT_STAFF = False
    client = call_as("token")
    assert generate(client, slots=["aries", "taurus", "gemini"]).status_code == 202
    limited = generate(client, slots=["cancer", "leo", "virgo"])
    assert limited.status_code == 429
    # A fixed window (django-ratelimit's): it ends within the hour.
    assert 1 <= int(limited["Retry-After"]) <= 3600
    assert limited["RateLimit-Limit"] == "5"
    assert limited["RateLimit-Remaining"] == "2"
    assert stamped(limited.json(), "trace_id", "timestamp") == {
        "error": "Too many set generation requests (rate limit 'set_generate'); "
        f"try again in {limited['Retry-After']} seconds.",
        "error_code": "rate_limited",
        "details": {
            "limit": "set_generate",
            "retry_after": int(limited["Retry-After"]),
        },
    }
    # Twelve images could never fit in a window of five.
    whole = generate(client, album="All signs")
    assert whole.status_code == 422
    assert whole.json()["details"]["errors"] == {
        "slots": "12 images are more than the 'set_generate' rate limit allows "
        "at once (5 per 3600s); ask for fewer, or ask an operator to raise the "
        "limit"
    }
    # Refused requests leave no run and no album behind.
    assert SetRun.objects.count() == 1
    assert not Album.objects.filter(name="All signs").exists()


def test_cancel_a_queued_run_then_retry_it(call_as: Any, gen_env: Path) -> None:
    client = call_as("token")
    run_id = generate(client, slots=["aries"]).json()["id"]
    cancelled = client.post(f"/api/set-runs/{run_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["slots"][0]["status"] == "missing"
    again = client.post(f"/api/set-runs/{run_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"] == f"Set run {run_id} already ended (cancelled)."

    found = client.get("/api/set-runs", {"status": "cancelled", "album": signs().pk})
    assert [r["id"] for r in found.json()["items"]] == [run_id]
    other = client.get(
        "/api/set-runs", {"template": SetTemplate.objects.get(slug="tarot").pk}
    )
    assert other.json()["items"] == []

    retried = client.post(f"/api/set-runs/{run_id}/retry")
    assert retried["Location"] == f"/api/set-runs/{run_id}"
    run(retried)
    assert client.get(f"/api/set-runs/{run_id}").json()["status"] == "succeeded"


def test_the_openapi_schema_declares_every_answer(call_as: Any) -> None:
    schema = call_as("anon").get("/api/openapi.json").json()
    answers = {
        (method, path): sorted(operation["responses"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "/set-" in path or "/slots" in path
    }
    # Every error the API root infers (401/403 staff only, 404 path parameter,
    # 422 validated input, 400 a body) and the ones the handlers declare.
    assert answers == {
        ("get", "/api/albums/{album_ref}/slots"): ["200", "401", "403", "404"],
        ("post", "/api/albums/{album_ref}/slots/fill-missing"): [
            "202",
            "401",
            "403",
            "404",
            "409",
            "422",
            "429",
        ],
        ("get", "/api/albums/{album_ref}/slots/contact-sheet"): [
            "200",
            "401",
            "403",
            "404",
            "422",
        ],
        ("get", "/api/albums/{album_ref}/slots/export"): ["200", "401", "403", "404"],
        ("post", "/api/albums/{album_ref}/slots/{key}/regenerate"): [
            "202",
            "400",
            "401",
            "403",
            "404",
            "409",
            "422",
            "429",
        ],
        ("put", "/api/albums/{album_ref}/slots/{key}"): [
            "200",
            "400",
            "401",
            "403",
            "404",
            "422",
        ],
        ("get", "/api/set-templates"): ["200", "401", "403", "422"],
        ("post", "/api/set-templates"): ["201", "400", "401", "403", "422"],
        ("get", "/api/set-templates/{id}"): ["200", "401", "403", "404"],
        ("patch", "/api/set-templates/{id}"): [
            "200",
            "400",
            "401",
            "403",
            "404",
            "422",
        ],
        ("delete", "/api/set-templates/{id}"): ["204", "401", "403", "404", "409"],
        ("get", "/api/set-templates/{id}/csv"): ["200", "401", "403", "404"],
        ("get", "/api/set-templates/{id}/preview"): ["200", "401", "403", "404", "422"],
        ("post", "/api/set-templates/{id}/generate"): [
            "202",
            "400",
            "401",
            "403",
            "404",
            "409",
            "422",
            "429",
        ],
        ("get", "/api/set-runs"): ["200", "401", "403", "422"],
        ("get", "/api/set-runs/{run_id}"): ["200", "401", "403", "404"],
        ("post", "/api/set-runs/{run_id}/cancel"): ["200", "401", "403", "404", "409"],
        ("post", "/api/set-runs/{run_id}/retry"): ["202", "401", "403", "404", "409"],
    }
    sheet = schema["paths"]["/api/albums/{album_ref}/slots/contact-sheet"]["get"]
    assert list(sheet["responses"]["200"]["content"]) == ["image/png"]
