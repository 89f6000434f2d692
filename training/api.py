"""JSON API for training runs (/api/training/runs) and LoRAs (/api/loras).

Staff only, both: runs carry configs, base model paths and logs; LoRAs may be
trained on private albums and their metadata names base model paths. Creating
and starting a run answer 202 with the run's URL in Location; the gpu worker
takes it from there.
"""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, HttpRequest, HttpResponse
from django.utils.text import slugify
from ninja import Query, Router

from albums.selectors import album_get
from imagineer_project.errors import error_responses, get_or_404
from imagineer_project.pagination import PageIn, PageOut, keyset_paginate
from imagineer_project.permissions import staff_required
from imagineer_project.run_api import RunRoutes, add_run_routes
from training.config import config_fields
from training.datasets.selectors import dataset_version_get
from training.datasets.services import repeats_by_album
from training.models import Lora, TrainingRun
from training.registry import lora_open
from training.schemas import (
    ConfigFieldOut,
    LoraDetailOut,
    LoraFilterIn,
    LoraOut,
    TrainingRunDetailOut,
    TrainingRunFilterIn,
    TrainingRunIn,
    TrainingRunLogOut,
    TrainingRunOut,
)
from training.selectors import RUN_DETAIL_FIELDS, training_run_log_lines, training_runs
from training.services import (
    training_run_create,
    training_run_create_from_albums,
    training_run_start,
)

runs_router = Router(tags=["training"], auth=staff_required)
loras_router = Router(tags=["loras"], auth=staff_required)


RUNS = RunRoutes(
    model=TrainingRun,
    what="Training run",
    location="/api/training/runs",
    list_out=TrainingRunOut,
    detail_out=TrainingRunDetailOut,
    detail=training_runs,
    listing=lambda: training_runs().defer(*RUN_DETAIL_FIELDS),
    filters=TrainingRunFilterIn,
    cancel_doc="Stop a run: at once if queued, within one training step if running.",
    retry_doc="Resume a failed or cancelled run from its latest checkpoint (the "
    "same as /start for such a run).",
)


@runs_router.get("/config", response=list[ConfigFieldOut])
def training_config_fields(request: HttpRequest) -> Any:
    """Each config field with its section, default, allowed range or choices and
    help (from settings). The learning rate's range depends on the optimizer
    (`optimizer_ranges`); an unset resolution follows the base model's family."""
    return config_fields()


@runs_router.post("", response={202: TrainingRunDetailOut})
@error_responses(404, 429, 507)
def training_run_new(
    request: HttpRequest, response: HttpResponse, payload: TrainingRunIn
) -> Any:
    """Create a run from albums or a dataset version and (with `start`) queue it.
    422 names each bad config field (config_invalid) or says why the albums
    cannot train (dataset_invalid)."""
    options: dict[str, Any] = {
        "base_model": payload.base_model,
        "config": payload.config.model_dump(exclude_none=True),
        "name": payload.name,
        "created_by": request.user,
        "enqueue": payload.start,
        "rate_limited": True,
    }
    if payload.albums is not None:
        albums = [album_get(user=request.user, ref=ref) for ref in payload.albums]
        run = training_run_create_from_albums(
            albums=albums,
            trigger_word=payload.trigger_word,
            include_nsfw=payload.include_nsfw,
            repeats=repeats_by_album(albums, payload.repeats),
            **options,
        )
    else:
        dataset = dataset_version_get(dataset_id=payload.dataset)
        run = training_run_create(dataset=dataset, **options)
    return RUNS.accepted(response, run)


@runs_router.post("/{int:run_id}/start", response={202: TrainingRunDetailOut})
@error_responses(429, 507)
def training_run_begin(
    request: HttpRequest, response: HttpResponse, run_id: int
) -> Any:
    """Queue a run created without `start`, or resume a failed or cancelled one
    from its latest checkpoint. 409 for a run that is queued, running or done."""
    run = training_run_start(run=RUNS.get(run_id), user=request.user, rate_limited=True)
    return RUNS.accepted(response, run)


@runs_router.get("/{int:run_id}/logs", response=TrainingRunLogOut)
def training_run_logs(request: HttpRequest, run_id: int) -> Any:
    """The last 200 lines of the run's log."""
    run = RUNS.get(run_id)
    return {"id": run.pk, "status": run.status, "lines": training_run_log_lines(run)}


add_run_routes(runs_router, RUNS)


# --- LoRAs ---------------------------------------------------------------------------


def _lora(lora_id: int) -> Lora:
    return get_or_404(Lora, lora_id, "LoRA")


@loras_router.get("", response=PageOut[LoraOut])
def lora_list(
    request: HttpRequest, filters: Query[LoraFilterIn], page: Query[PageIn]
) -> Any:
    """Registered LoRAs, newest first."""
    loras = Lora.objects.all()
    if filters.q:
        loras = loras.filter(name__icontains=filters.q)
    if filters.base_model:
        loras = loras.filter(base_model=filters.base_model)
    return keyset_paginate(loras, keys=["-id"], page=page)


@loras_router.get("/{int:lora_id}", response=LoraDetailOut)
def lora_detail(request: HttpRequest, lora_id: int) -> Any:
    """A LoRA with its file's safetensors metadata (strings)."""
    return _lora(lora_id)


@loras_router.get("/{int:lora_id}/download")
def lora_download(request: HttpRequest, lora_id: int) -> FileResponse:
    """The .safetensors file (kohya keys: loads in diffusers, ComfyUI, A1111)."""
    lora = _lora(lora_id)
    return FileResponse(
        lora_open(lora),
        as_attachment=True,
        filename=f"{slugify(lora.name) or 'lora'}.safetensors",
        content_type="application/octet-stream",
    )
