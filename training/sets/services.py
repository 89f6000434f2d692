"""Set templates and the runs that render them into set albums.

A template is checked whole (every bad field named) wherever it is written.
A run renders slots of one set album: the whole set, only what is missing, or
chosen slots again with a fresh seed. Each slot's seed derives from a set seed
and its key (`slot_seed`), so rendering one slot again with the same set seed
gives the same picture. The worker's half is training.sets.runs.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

from albums.models import Album
from imagineer_project.errors import Conflict, Invalid, NotFound
from imagineer_project.permissions import person
from imagineer_project.runs import run_enqueue
from training.generation.services import (
    SEED_MAX,
    GenerationInvalid,
    GenerationRequest,
    album_for,
    generation_rate_check,
    generation_validate,
    prompt_with_trigger_words,
    size_error,
    stack_entry,
    trigger_words,
)
from training.models import (
    Lora,
    SetAlbum,
    SetRun,
    SetSlot,
    SetTemplate,
    SetVariant,
)
from training.sets import templates as tpl
from training.sets.selectors import open_keys, set_album_of

if TYPE_CHECKING:
    from django.contrib.auth.models import User

TEMPLATE_TEXT_FIELDS = (
    "name",
    "description",
    "base_prompt",
    "prompt_template",
    "style_suffix",
    "example_theme",
    "negative_prompt",
    "base_model",
)
MAX_VARIANTS = 8
# What every image of a set renders with: the set album holds them, and a run
# copies them when it is made.
RENDER_FIELDS = (
    "negative_prompt",
    "base_model",
    "loras",
    "insert_trigger_words",
    "width",
    "height",
    "steps",
    "guidance",
    "scheduler",
)
PREVIEW_ROWS = 5


class SetInvalid(Invalid):
    """A template or a set request that cannot be used; `errors` names each
    bad field and why."""

    code = "set_invalid"


class TemplateInUse(Conflict):
    code = "template_in_use"


class NothingToRender(Conflict):
    code = "nothing_to_render"


def slot_seed(set_seed: int, key: str, variant: int = 0) -> int:
    """The seed of one image of a slot: the same set seed, slot and variant
    always give the same seed; any change gives an unrelated one."""
    digest = hashlib.sha256(f"{set_seed}/{key}/{variant}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


# --- templates ------------------------------------------------------------------


def _template_errors(
    fields: dict[str, Any], template: SetTemplate | None
) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not str(fields.get("name", "")).strip():
        errors["name"] = "a name is required"
    slug = str(fields.get("slug", ""))
    if not tpl.KEY_SHAPE.match(slug) or len(slug) > 100:
        errors["slug"] = "lower-case letters and digits joined by '-' (e.g. 'tarot')"
    elif (
        SetTemplate.objects.filter(slug=slug)
        .exclude(pk=template.pk if template else None)
        .exists()
    ):
        errors["slug"] = f"another template is already called {slug!r}"
    columns = fields.get("columns", [])
    if problem := tpl.check_columns(columns):
        errors["columns"] = problem
    elif problem := tpl.check_rows(columns, fields.get("rows", [])):
        errors["rows"] = problem
    if "columns" not in errors and (
        problem := tpl.check_prompt_template(fields.get("prompt_template", ""), columns)
    ):
        errors["prompt_template"] = problem
    for side in ("width", "height"):
        if problem := size_error(fields.get(side)):
            errors[side] = problem
    errors.update(_lora_errors(fields.get("loras", [])))
    return errors


def _lora_errors(loras: Any) -> dict[str, str]:
    if not isinstance(loras, list) or not all(
        isinstance(e, dict) and str(e.get("name", "")).strip() for e in loras
    ):
        return {"loras": 'a list of {"name": LoRA name, "weight": number}'}
    for entry in loras:
        weight = entry.get("weight")
        if weight is not None and not isinstance(weight, int | float):
            return {"loras": f"the weight of {entry['name']!r} must be a number"}
    return {}


EDITABLE = (*TEMPLATE_TEXT_FIELDS, "slug", "columns", "rows", "width", "height")


def _template_fields(
    data: dict[str, Any], template: SetTemplate | None
) -> dict[str, Any]:
    """The template's fields after applying `data` (any subset; `csv` stands
    for columns and rows), normalized; raises SetInvalid with every error."""
    fields: dict[str, Any] = {"columns": [], "rows": [], "width": 512, "height": 512}
    if template is not None:
        fields = {name: getattr(template, name) for name in (*EDITABLE, "loras")}
    fields.setdefault("loras", [])
    errors: dict[str, str] = {}
    for name, value in data.items():
        if name == "csv":
            try:
                fields["columns"], fields["rows"] = tpl.rows_from_csv(value or "")
            except ValueError as exc:
                errors["csv"] = str(exc)
        elif name in TEMPLATE_TEXT_FIELDS:
            fields[name] = str(value or "").strip()
        elif name in (*EDITABLE, "loras"):
            fields[name] = value
    if "rows" in data and "csv" not in data:
        fields["rows"] = tpl.normalize_rows(fields["columns"], data["rows"] or [])
    if not fields.get("slug") and fields.get("name"):
        fields["slug"] = tpl.key_for(fields["name"])
    errors.update(_template_errors(fields, template))
    if errors:
        raise SetInvalid(errors=errors)
    fields["loras"] = [
        {"name": str(e["name"]).strip(), "weight": e.get("weight")}
        for e in fields["loras"]
    ]
    return fields


def set_template_check(
    *, template: SetTemplate | None = None, **data: Any
) -> dict[str, Any]:
    """The fields `data` would give `template` (or a new one), normalized;
    raises SetInvalid naming every bad field. Writes nothing."""
    return _template_fields(data, template)


def set_template_create(
    *, created_by: User | None = None, builtin: bool = False, **data: Any
) -> SetTemplate:
    """A new template from its fields (`csv` may stand for columns + rows);
    raises SetInvalid naming every bad field."""
    fields = _template_fields(data, None)
    return SetTemplate.objects.create(
        **fields, builtin=builtin, created_by=person(created_by)
    )


def set_template_update(*, template: SetTemplate, **data: Any) -> SetTemplate:
    """Change any of a template's fields; a built-in one is marked edited, so
    no later migration overwrites it."""
    fields = _template_fields(data, template)
    for name, value in fields.items():
        setattr(template, name, value)
    template.edited = template.edited or template.builtin
    template.save()
    return template


def set_template_delete(*, template: SetTemplate) -> None:
    """Delete a template nothing was rendered from; TemplateInUse otherwise."""
    runs = template.runs.count()
    albums = template.set_albums.count()
    if runs or albums:
        raise TemplateInUse(
            f"Template {template.name!r} has {runs} set run(s) and {albums} set "
            "album(s); it is what they were made from, so it stays. Copy it under "
            "a new name to change it freely."
        )
    template.delete()


def set_template_get(ref: str | int) -> SetTemplate:
    """A template by id or slug; NotFound names the known slugs."""
    text = str(ref).strip()
    found = None
    if isinstance(ref, int) or (text.isascii() and text.isdigit()):
        found = SetTemplate.objects.filter(pk=int(text)).first()
    if found is None:  # a slug may be all digits ("2024")
        found = SetTemplate.objects.filter(slug=text).first()
    if found is None:
        known = ", ".join(SetTemplate.objects.values_list("slug", flat=True)[:30])
        raise NotFound(f"No set template {ref!r} (known: {known or 'none'}).")
    return found


def template_csv(template: SetTemplate) -> str:
    return tpl.rows_to_csv(template.columns, template.rows)


# --- prompts --------------------------------------------------------------------


def slot_prompt(
    template: SetTemplate, row: dict[str, Any], theme: str, words: Sequence[str] = ()
) -> str:
    """The prompt of one slot: base prompt, "Art style: theme", the filled
    template, style suffix; the LoRAs' trigger words in front."""
    prompt = tpl.assemble_prompt(
        base_prompt=template.base_prompt,
        theme=theme,
        filled=tpl.fill(template.prompt_template, row["values"]),
        style_suffix=template.style_suffix,
    )
    return prompt_with_trigger_words(prompt, words) if words else prompt


def named_stack(names: Sequence[str], *, strict: bool = True) -> list[dict[str, Any]]:
    """The registered LoRAs `names` names, as stack entries with their trigger
    words (what previews put in front); SetInvalid names the unknown ones,
    which are left out instead when not `strict`."""
    found = {lora.name: lora for lora in Lora.objects.filter(name__in=names)}
    unknown = [name for name in names if name not in found]
    if unknown and strict:
        raise SetInvalid(errors={"loras": f"unknown LoRA {', '.join(unknown)}"})
    return [{"trigger_words": found[n].trigger_words} for n in names if n in found]


def set_template_preview(
    template: SetTemplate,
    *,
    theme: str | None = None,
    loras: Sequence[dict[str, Any]] = (),
    rows: int = PREVIEW_ROWS,
) -> list[dict[str, str]]:
    """The first rows' assembled prompts (theme: the template's example when
    None), as a person checks them before running the set."""
    theme = template.example_theme if theme is None else theme
    words = trigger_words(loras)
    return [
        {
            "key": row["key"],
            "label": row["label"],
            "prompt": slot_prompt(template, row, theme, words),
        }
        for row in template.rows[:rows]
    ]


# --- set runs -------------------------------------------------------------------


@dataclass(frozen=True)
class SetRequest:
    """What a person asks for when generating a set. None means the template's
    (size, negative prompt, LoRAs, base model) or the set album's (theme, seed,
    variants, steps...) when the album already holds this set."""

    template: str | int
    album: str = ""  # a name; made if missing; default "<template> – <theme>"
    theme: str | None = None
    loras: Sequence[tuple[str | int, float | None]] | None = None
    base_model: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    variants: int | None = None
    slots: Sequence[str] = field(default_factory=tuple)
    only_missing: bool = False
    insert_trigger_words: bool = True


def _pick(value: Any, *fallbacks: Any) -> Any:
    for candidate in (value, *fallbacks):
        if candidate is not None:
            return candidate
    return None


def _render_settings(
    request: SetRequest, template: SetTemplate, existing: SetAlbum | None
) -> dict[str, Any]:
    """The settings a run renders with, checked as a generation request is:
    the request's, else the set album's, else the template's."""
    old, default = existing, GenerationRequest  # its fields' defaults
    loras = request.loras
    if loras is None:
        loras = (
            [(e["lora_id"], e["weight"]) for e in old.loras]
            if old
            else [(e["name"], e.get("weight")) for e in template.loras]
        )
    theme = _pick(request.theme, old and old.theme, template.example_theme)
    generation = GenerationRequest(
        prompt="check",  # the slots' prompts are checked below
        negative_prompt=_pick(
            request.negative_prompt,
            old and old.negative_prompt,
            template.negative_prompt,
        ),
        steps=_pick(request.steps, old and old.steps, default.steps),
        guidance=_pick(request.guidance, old and old.guidance, default.guidance),
        seed=_pick(request.seed, old and old.set_seed),
        width=_pick(request.width, old and old.width, template.width),
        height=_pick(request.height, old and old.height, template.height),
        scheduler=_pick(request.scheduler, old and old.scheduler, default.scheduler),
        loras=tuple(loras),
        insert_trigger_words=request.insert_trigger_words,
        base_model=_pick(
            request.base_model, old and old.base_model, template.base_model
        )
        or "",
    )
    errors: dict[str, str] = {}
    try:
        base_model, chosen = generation_validate(generation)
    except GenerationInvalid as exc:
        errors.update(exc.errors)
        base_model, chosen = "", []
    variants = _pick(request.variants, old and old.variants, 1)
    if not 1 <= variants <= MAX_VARIANTS:
        errors["variants"] = f"from 1 to {MAX_VARIANTS} (got {variants})"
    if len(theme) > 500:
        errors["theme"] = "at most 500 characters"
    if errors:
        raise SetInvalid(errors=errors)
    seed = generation.seed
    return {
        "theme": theme.strip(),
        "set_seed": secrets.randbelow(SEED_MAX + 1) if seed is None else seed,
        "variants": variants,
        "negative_prompt": generation.negative_prompt.strip(),
        "base_model": base_model,
        "loras": [stack_entry(lora, weight) for lora, weight in chosen],
        "insert_trigger_words": generation.insert_trigger_words,
        "width": generation.width,
        "height": generation.height,
        "steps": generation.steps,
        "guidance": generation.guidance,
        "scheduler": generation.scheduler,
    }


def _set_album_for(
    request: SetRequest, template: SetTemplate
) -> tuple[str, Album | None, SetAlbum | None]:
    """The set album's name, and the album (and its set) when it exists; a
    new one is made only once the whole request was found good."""
    theme = _pick(request.theme, template.example_theme).strip()
    name = request.album.strip() or f"{template.name} – {theme or 'set'}"
    if len(name) > 200:
        raise SetInvalid(errors={"album": "at most 200 characters"})
    album = Album.objects.filter(name=name).order_by("id").first()
    existing = album and SetAlbum.objects.filter(album=album).first()
    if existing and existing.template_id != template.pk:
        raise SetInvalid(
            errors={
                "album": f"{name!r} holds the set {existing.template.name!r}; "
                "choose another album for this template"
            }
        )
    return name, album, existing


def _sync_slots(set_album: SetAlbum) -> dict[str, SetSlot]:
    """A slot for every row of the template (rows added since get one); labels
    and order follow the template. Slots whose row was removed stay."""
    slots = {s.key: s for s in set_album.slots.all()}
    for position, row in enumerate(set_album.template.rows):
        slot = slots.get(row["key"])
        if slot is None:
            slots[row["key"]] = SetSlot.objects.create(
                set_album=set_album,
                key=row["key"],
                label=row["label"],
                position=position,
            )
        elif (slot.label, slot.position) != (row["label"], position):
            slot.label, slot.position = row["label"], position
            slot.save(update_fields=["label", "position"])
    return slots


def _keys_to_render(
    request: SetRequest, template: SetTemplate, set_album: SetAlbum | None
) -> list[str]:
    keys = [row["key"] for row in template.rows]
    if request.slots:
        wanted = {k.strip() for k in request.slots if k.strip()}
        unknown = sorted(wanted - set(keys))
        if unknown:
            raise SetInvalid(
                errors={"slots": f"no slot {', '.join(unknown)} in {template.slug!r}"}
            )
        keys = [k for k in keys if k in wanted]
    if request.only_missing and set_album is not None:
        missing = set(open_keys(set_album))
        keys = [k for k in keys if k in missing]
    return keys


def _prompts(
    template: SetTemplate, keys: list[str], render: dict[str, Any] | SetAlbum
) -> dict[str, str]:
    """Each slot's prompt with the theme and LoRAs of `render` (a request's
    checked settings, or the set album's); SetInvalid when one is too long."""
    if isinstance(render, SetAlbum):
        render = {name: getattr(render, name) for name in ("theme", *RENDER_FIELDS)}
    words = trigger_words(render["loras"]) if render["insert_trigger_words"] else []
    rows = {row["key"]: row for row in template.rows}
    prompts = {k: slot_prompt(template, rows[k], render["theme"], words) for k in keys}
    limit = settings.GENERATION_MAX_PROMPT_CHARS
    if long := [k for k, p in prompts.items() if len(p) > limit]:
        raise SetInvalid(
            errors={
                "prompt_template": f"the prompt of {long[0]!r} is over {limit} "
                "characters"
            }
        )
    return prompts


def set_run_create(
    *,
    request: SetRequest,
    created_by: User | None = None,
    rate_limited: bool = False,
    enqueue: bool = True,
) -> SetRun:
    """Check a set request and queue its run on the gpu worker: one image per
    slot and variant into the set album (made, or found by name). Raises
    SetInvalid naming every bad field, NothingToRender when only missing slots
    were asked for and none is, and, with `rate_limited`, RateLimitExceeded
    (the `set_generate` limit counts every image)."""
    template = set_template_get(request.template)
    user = person(created_by)
    name, album, existing = _set_album_for(request, template)
    errors: dict[str, str] = {}
    try:
        render = _render_settings(request, template, existing)
    except SetInvalid as exc:
        errors.update(exc.errors)
    try:
        keys = _keys_to_render(request, template, existing)
    except SetInvalid as exc:
        errors.update(exc.errors)
    if errors:
        raise SetInvalid(errors=errors)
    if not keys:
        raise NothingToRender(f"Every slot of {name!r} asked for is filled.")
    prompts = _prompts(template, keys, render)
    if rate_limited:
        generation_rate_check(
            user,
            images=len(keys) * render["variants"],
            field="slots",
            limit="set_generate",
        )
    with transaction.atomic():
        set_album, _ = SetAlbum.objects.update_or_create(
            album=album or album_for(name, user),
            defaults={"template": template, **render},
        )
        _sync_slots(set_album)
        return _run_create(
            set_album, SetRun.Mode.SET, keys, prompts, set_album.set_seed, user, enqueue
        )


def _run_create(
    set_album: SetAlbum,
    mode: str,
    keys: list[str],
    prompts: dict[str, str],
    set_seed: int,
    user: User | None,
    enqueue: bool,
) -> SetRun:
    render = {name: getattr(set_album, name) for name in RENDER_FIELDS}
    run = SetRun.objects.create(
        template=set_album.template,
        set_album=set_album,
        mode=mode,
        theme=set_album.theme,
        set_seed=set_seed,
        variants=set_album.variants,
        render={**render, "prompts": prompts},
        slot_keys=keys,
        progress_total=len(keys),
        created_by=user,
    )
    if enqueue:
        run_enqueue(run)
    return run


def _again(
    set_album: SetAlbum,
    mode: str,
    keys: list[str],
    set_seed: int,
    user: User | None,
    rate_limited: bool,
    enqueue: bool,
) -> SetRun:
    """A run over `keys` of an existing set album with its stored settings."""
    prompts = _prompts(set_album.template, keys, set_album)
    if rate_limited:
        generation_rate_check(
            user,
            images=len(keys) * set_album.variants,
            field="slots",
            limit="set_generate",
        )
    with transaction.atomic():
        _sync_slots(set_album)
        return _run_create(set_album, mode, keys, prompts, set_seed, user, enqueue)


def set_album_get(album: Album) -> SetAlbum:
    found = set_album_of(album)
    if found is None:
        raise NotFound(
            f"Album {album.name!r} holds no set; generate a set into it first."
        )
    return found


def set_fill_missing(
    *,
    album: Album,
    created_by: User | None = None,
    rate_limited: bool = False,
    enqueue: bool = True,
) -> SetRun:
    """Render exactly the slots that are missing or failed, with the album's
    set seed (so each gets the picture the set would have given it)."""
    set_album = set_album_get(album)
    keys = open_keys(set_album)
    if not keys:
        raise NothingToRender(f"Every slot of {album.name!r} is filled.")
    return _again(
        set_album,
        SetRun.Mode.FILL,
        keys,
        set_album.set_seed,
        person(created_by),
        rate_limited,
        enqueue,
    )


def set_slots_regenerate(
    *,
    album: Album,
    keys: Sequence[str],
    created_by: User | None = None,
    seed: int | None = None,
    rate_limited: bool = False,
    enqueue: bool = True,
) -> SetRun:
    """Render `keys` again with a new set seed (drawn unless given); the new
    image fills the slot, the old ones stay in the album, unchosen."""
    set_album = set_album_get(album)
    order = [row["key"] for row in set_album.template.rows]
    unknown = sorted(set(keys) - set(order))
    if not keys or unknown:
        raise SetInvalid(
            errors={
                "slots": f"no slot {', '.join(unknown)}" if unknown else "choose a slot"
            }
        )
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise SetInvalid(errors={"seed": f"from 0 to {SEED_MAX}"})
    new_seed = secrets.randbelow(SEED_MAX + 1) if seed is None else seed
    return _again(
        set_album,
        SetRun.Mode.REGENERATE,
        [k for k in order if k in set(keys)],
        new_seed,
        person(created_by),
        rate_limited,
        enqueue,
    )


def set_slot_choose(*, album: Album, key: str, image_id: int) -> SetSlot:
    """Let the image `image_id` (a variant rendered for this slot) fill it."""
    set_album = set_album_get(album)
    slot = SetSlot.objects.filter(set_album=set_album, key=key).first()
    if slot is None:
        raise NotFound(f"No slot {key!r} in {album.name!r}.")
    variant = SetVariant.objects.filter(slot=slot, image_id=image_id).first()
    if variant is None:
        known = list(slot.variants.values_list("image_id", flat=True))
        raise SetInvalid(
            errors={
                "image_id": f"image {image_id} was not rendered for {key!r} "
                f"(its images: {known or 'none yet'})"
            }
        )
    if not album.memberships.filter(image_id=image_id).exists():
        raise SetInvalid(
            errors={"image_id": f"image {image_id} is no longer in the album"}
        )
    slot.chosen = variant
    slot.save(update_fields=["chosen"])
    return slot
