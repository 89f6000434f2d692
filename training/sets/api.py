"""JSON API for sets: the templates (/api/set-templates), the runs that render
them (/api/set-runs) and the slots of a set album (/api/albums/{album_ref}/slots).

Staff only: a set spends GPU time and writes images into albums. Generating a
set, filling its missing slots and regenerating a slot answer 202 with the set
run's URL in Location, and count every image against the generation rate
limit (429 with Retry-After). A template is addressed by id (or slug).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, IntegerField, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import FileResponse, HttpRequest, HttpResponse
from django.utils.http import content_disposition_header
from ninja import Query, Router, Status

from albums.models import Album
from albums.selectors import album_get
from imagineer_project.errors import ErrorOut
from imagineer_project.pagination import PageIn, PageOut, keyset_paginate
from imagineer_project.permissions import staff_required
from imagineer_project.run_api import RunRoutes, add_run_routes
from training.models import SetRun, SetTemplate
from training.sets.schemas import (
    ChooseIn,
    PreviewIn,
    PromptOut,
    RegenerateIn,
    SetGenerateIn,
    SetRunDetailOut,
    SetRunFilterIn,
    SetRunOut,
    SlotOut,
    TemplateDetailOut,
    TemplateIn,
    TemplateOut,
)
from training.sets.selectors import SlotStatus, slot_statuses
from training.sets.services import (
    SetRequest,
    named_stack,
    set_album_get,
    set_fill_missing,
    set_run_create,
    set_slot_choose,
    set_slots_regenerate,
    set_template_create,
    set_template_delete,
    set_template_get,
    set_template_preview,
    set_template_update,
    template_csv,
)
from training.sets.sheet import contact_sheet, set_file_stem, set_zip

templates_router = Router(tags=["sets"], auth=staff_required)
runs_router = Router(tags=["sets"], auth=staff_required)
slots_router = Router(tags=["sets"], auth=staff_required)

# What starting a set run may answer besides 202.
STARTED = {404: ErrorOut, 409: ErrorOut, 422: ErrorOut, 429: ErrorOut}


def _file(content_type: str, description: str) -> dict[str, Any]:
    """OpenAPI for a 200 that is a file, not JSON."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "responses": {
            200: {"description": description, "content": {content_type: binary}}
        }
    }


def _runs() -> QuerySet[SetRun]:
    return SetRun.objects.select_related("template", "set_album__album")


def _run_listing() -> QuerySet[SetRun]:
    # `render` holds every slot's prompt (78 for a tarot): lists leave it out
    # and read only its step count.
    steps = Cast(KT("render__steps"), IntegerField())
    return _runs().defer("render").annotate(render_steps=steps)


RUNS = RunRoutes(
    model=SetRun,
    what="Set run",
    location="/api/set-runs",
    list_out=SetRunOut,
    detail_out=SetRunDetailOut,
    detail=_runs,
    listing=_run_listing,
    filters=SetRunFilterIn,
    cancel_doc="Stop a set run: at once if queued, within a denoising step if "
    "running; the images made so far stay. 409 once it has ended.",
    retry_doc="Queue a failed or cancelled set run again; it renders only the "
    "slots it had not tried.",
)


# --- templates ------------------------------------------------------------------


@templates_router.get("", response=PageOut[TemplateOut])
def set_template_list(request: HttpRequest, page: Query[PageIn]) -> Any:
    """Set templates, oldest first (the built-in ones lead)."""
    templates = SetTemplate.objects.annotate(run_count=Count("runs"))
    return keyset_paginate(templates, keys=["id"], page=page)


@templates_router.post("", response={201: TemplateDetailOut, 422: ErrorOut})
def set_template_new(request: HttpRequest, payload: TemplateIn) -> Any:
    """A template from its fields: `name`, `prompt_template` and a table
    (`columns` + `rows`, or `csv`) are needed. 422 `set_invalid` names every
    bad field."""
    fields = payload.dict(exclude_unset=True)
    return Status(201, set_template_create(created_by=request.user, **fields))


@templates_router.get("/{id}", response={200: TemplateDetailOut, 404: ErrorOut})
def set_template_detail(request: HttpRequest, id: str) -> Any:
    """One template with its table (`rows`: key, label, values)."""
    return set_template_get(id)


@templates_router.patch(
    "/{id}", response={200: TemplateDetailOut, 404: ErrorOut, 422: ErrorOut}
)
def set_template_change(request: HttpRequest, id: str, payload: TemplateIn) -> Any:
    """Change any of its fields; a built-in template becomes `edited`, so no
    later upgrade overwrites it."""
    template = set_template_get(id)
    return set_template_update(template=template, **payload.dict(exclude_unset=True))


@templates_router.delete("/{id}", response={204: None, 404: ErrorOut, 409: ErrorOut})
def set_template_remove(request: HttpRequest, id: str) -> Any:
    """Delete a template nothing was rendered from; 409 `template_in_use` when
    set runs or set albums were made from it."""
    set_template_delete(template=set_template_get(id))
    return Status(204, None)


@templates_router.get(
    "/{id}/csv",
    response={404: ErrorOut},
    openapi_extra=_file("text/csv", "The table"),
)
def set_template_csv(request: HttpRequest, id: str) -> HttpResponse:
    """The table as CSV (`key,label,<columns>`), as `<slug>.csv`: edit it and
    send it back as `csv`."""
    template = set_template_get(id)
    response = HttpResponse(template_csv(template), content_type="text/csv")
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=f"{template.slug}.csv"
    )
    return response


@templates_router.get(
    "/{id}/preview", response={200: list[PromptOut], 404: ErrorOut, 422: ErrorOut}
)
def set_template_prompts(
    request: HttpRequest, id: str, options: Query[PreviewIn]
) -> Any:
    """The assembled prompts of the first rows with `theme` (default: the
    example theme), the trigger words of `loras` in front."""
    template = set_template_get(id)
    names = [name.strip() for name in options.loras.split(",") if name.strip()]
    return set_template_preview(template, theme=options.theme, loras=named_stack(names))


@templates_router.post("/{id}/generate", response={202: SetRunDetailOut, **STARTED})
def set_generate(
    request: HttpRequest, response: HttpResponse, id: str, payload: SetGenerateIn
) -> Any:
    """Queue a set: one image per slot (and variant) into the album, made or
    found by name; poll the run at Location. Left-out settings come from the
    album's set, else the template. 422 `set_invalid` names every bad field;
    409 `nothing_to_render` when `only_missing` finds every slot filled."""
    run = set_run_create(
        request=_set_request(id, payload), created_by=request.user, rate_limited=True
    )
    return RUNS.accepted(response, run)


def _set_request(template: str, payload: SetGenerateIn) -> SetRequest:
    data = payload.dict()
    choices = data.pop("loras")
    loras = None  # the album's or the template's stack
    if choices is not None:
        loras = tuple(
            (c["id"] if c["id"] is not None else (c["name"] or ""), c["weight"])
            for c in choices
        )
    return SetRequest(template=template, **data, loras=loras)


# --- the slots of a set album -----------------------------------------------------
# Fixed paths come before "/slots/{key}": a URL is matched by the first
# pattern that fits, whatever its method.


def _album(request: HttpRequest, album_ref: str) -> Album:
    return album_get(user=request.user, ref=album_ref)


def _slot(album: Album, key: str) -> SlotStatus:
    return next(s for s in slot_statuses(set_album_get(album)) if s.key == key)


@slots_router.get("/{album_ref}/slots", response={200: list[SlotOut], 404: ErrorOut})
def set_slot_list(request: HttpRequest, album_ref: str) -> Any:
    """Every slot of the album's set in slot order: `filled` while its chosen
    image is in the album, else `failed` or `missing`. 404 when the album
    holds no set."""
    return slot_statuses(set_album_get(_album(request, album_ref)))


@slots_router.post(
    "/{album_ref}/slots/fill-missing", response={202: SetRunDetailOut, **STARTED}
)
def set_slots_fill(request: HttpRequest, response: HttpResponse, album_ref: str) -> Any:
    """Render the missing and failed slots with the set's seed and settings;
    409 `nothing_to_render` when every slot is filled."""
    run = set_fill_missing(
        album=_album(request, album_ref), created_by=request.user, rate_limited=True
    )
    return RUNS.accepted(response, run)


@slots_router.get(
    "/{album_ref}/slots/contact-sheet",
    response={404: ErrorOut},
    openapi_extra=_file("image/png", "The contact sheet"),
)
def set_contact_sheet(
    request: HttpRequest, album_ref: str, missing: bool = True
) -> HttpResponse:
    """The set as one PNG grid in slot order, each slot labelled; `missing=false`
    leaves out the slots that are not filled."""
    set_album = set_album_get(_album(request, album_ref))
    sheet = contact_sheet(set_album, show_missing=missing)
    return HttpResponse(sheet, content_type="image/png")


@slots_router.get(
    "/{album_ref}/slots/export",
    response={404: ErrorOut},
    openapi_extra=_file("application/zip", "The set as a zip"),
)
def set_export(request: HttpRequest, album_ref: str) -> FileResponse:
    """The set as `<album slug>.zip`: each filled slot's image named by its slot
    key, `contact-sheet.png` and `slots.csv` (prompt, seed, sha256 per slot)."""
    set_album = set_album_get(_album(request, album_ref))
    return FileResponse(
        set_zip(set_album),
        as_attachment=True,
        filename=f"{set_file_stem(set_album)}.zip",
        content_type="application/zip",
    )


@slots_router.post(
    "/{album_ref}/slots/{key}/regenerate", response={202: SetRunDetailOut, **STARTED}
)
def set_slot_regenerate(
    request: HttpRequest,
    response: HttpResponse,
    album_ref: str,
    key: str,
    payload: RegenerateIn | None = None,
) -> Any:
    """Render the slot again with a new set seed (`seed`, or a random one); the
    new image fills it and the old ones stay in the album as its variants."""
    run = set_slots_regenerate(
        album=_album(request, album_ref),
        keys=[key],
        seed=payload.seed if payload else None,
        created_by=request.user,
        rate_limited=True,
    )
    return RUNS.accepted(response, run)


@slots_router.put(
    "/{album_ref}/slots/{key}", response={200: SlotOut, 404: ErrorOut, 422: ErrorOut}
)
def set_slot_pick(
    request: HttpRequest, album_ref: str, key: str, payload: ChooseIn
) -> Any:
    """Let `image_id`, an image rendered for this slot, fill it; 422 when it is
    not one of the slot's variants."""
    album = _album(request, album_ref)
    set_slot_choose(album=album, key=key, image_id=payload.image_id)
    return _slot(album, key)


add_run_routes(runs_router, RUNS)
