"""JSON API for labeling: Claude jobs (/api/images/{id}/label, /api/albums/{id}/label,
/api/labeling-jobs) and label editing (/api/images/{id}/labels, /api/labels/{id}).

Reading an image's labels follows the image's visibility; everything else is
staff only. Every edit through here is recorded as the signed-in person's.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Router, Status

from albums.selectors import album_get, image_get
from imagineer_project.errors import error_responses, get_or_404
from imagineer_project.permissions import staff_required
from imagineer_project.run_api import RunRoutes, add_run_routes
from labeling import selectors, services
from labeling.models import Label, LabelingJob
from labeling.schemas import (
    AlbumLabelJobIn,
    ImageLabelsOut,
    LabelIn,
    LabelingJobDetailOut,
    LabelingJobFilterIn,
    LabelingJobOut,
    LabelJobIn,
    LabelOut,
    LabelPatchIn,
)
from labeling.services import labeling_job_create

images_router = Router(tags=["labeling"])
albums_router = Router(tags=["labeling"], auth=staff_required)
labels_router = Router(tags=["labeling"], auth=staff_required)
jobs_router = Router(tags=["labeling"], auth=staff_required)


@images_router.post(
    "/{int:image_id}/label", response={202: LabelingJobDetailOut}, auth=staff_required
)
@error_responses(429, 503)
def image_label(
    request: HttpRequest, response: HttpResponse, image_id: int, payload: LabelJobIn
) -> Any:
    """Label one image with Claude; poll the job at the Location header."""
    image = image_get(user=request.user, image_id=image_id)
    job = labeling_job_create(
        images=[image],
        style=payload.style,
        force=payload.force,
        budget_usd=payload.budget,
        use_batch=payload.batch,
        created_by=request.user,
        rate_limited=True,
    )
    return JOBS.accepted(response, job)


@albums_router.post("/{album_ref}/label", response={202: LabelingJobDetailOut})
@error_responses(429, 503)
def album_label(
    request: HttpRequest,
    response: HttpResponse,
    album_ref: str,
    payload: AlbumLabelJobIn,
) -> Any:
    """Label an album's images with Claude (skipping those this prompt version
    already labeled unless `force`); poll the job at the Location header."""
    album = album_get(user=request.user, ref=album_ref)
    job = labeling_job_create(
        album=album,
        style=payload.style,
        force=payload.force,
        budget_usd=payload.budget,
        limit=payload.limit,
        use_batch=payload.batch,
        created_by=request.user,
        rate_limited=True,
    )
    return JOBS.accepted(response, job)


# --- label editing ----------------------------------------------------------------


def _image_labels(request: HttpRequest, image_id: int) -> dict[str, Any]:
    image = image_get(user=request.user, image_id=image_id)
    choice = selectors.training_caption(image)
    return {
        "image_id": image.pk,
        "training_caption": {
            "text": choice.text,
            "label_id": choice.label_id,
            "reason": choice.reason,
            "rule": selectors.TRAINING_CAPTION_RULE,
        },
        "labels": list(selectors.labels_for_image(image)),
    }


@images_router.get("/{int:image_id}/labels", response=ImageLabelsOut)
def image_labels(request: HttpRequest, image_id: int) -> Any:
    """An image's labels, and the caption it trains with (and why)."""
    return _image_labels(request, image_id)


@images_router.post(
    "/{int:image_id}/labels", response={201: LabelOut}, auth=staff_required
)
def image_label_create(request: HttpRequest, image_id: int, payload: LabelIn) -> Any:
    """Add a label written by the signed-in person."""
    image = image_get(user=request.user, image_id=image_id)
    extra = {"review": payload.review} if payload.review else {}
    label = services.label_create(
        image=image, kind=payload.kind, text=payload.text, author=request.user, **extra
    )
    return Status(201, label)


def _label(label_id: int) -> Label:
    return get_or_404(Label.objects.select_related("author"), label_id, "Label")


@labels_router.patch("/{int:label_id}", response=LabelOut)
def label_patch(request: HttpRequest, label_id: int, payload: LabelPatchIn) -> Any:
    """Edit a label's text, kind or review state. New text makes the label the
    editor's own, so re-labeling with Claude never overwrites it."""
    return services.label_update(
        label=_label(label_id), user=request.user, **payload.dict()
    )


@labels_router.delete("/{int:label_id}", response={204: None})
def label_delete(request: HttpRequest, label_id: int) -> Any:
    services.label_delete(label=_label(label_id))
    return Status(204, None)


# --- jobs -------------------------------------------------------------------------


JOBS = RunRoutes(
    model=LabelingJob,
    what="Labeling job",
    location="/api/labeling-jobs",
    list_out=LabelingJobOut,
    detail_out=LabelingJobDetailOut,
    filters=LabelingJobFilterIn,
    cancel_doc="Stop a job: at once if queued, after the requests in flight if "
    "running (those are kept).",
)
add_run_routes(jobs_router, JOBS)
