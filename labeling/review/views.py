"""The review grid's two views: the page (GET, the image changelist's filters)
and the key presses (POST, JSON), which call labeling and albums services and
answer the changed cards."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, ChangeList
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_POST

from albums.models import Image
from albums.services import images_set
from imagineer_project.errors import DomainError, Invalid, NotFound
from labeling.review.selectors import THUMBNAIL_SIZE, review_cards, review_cards_for
from labeling.services import image_caption_set, images_review_set

logger = logging.getLogger(__name__)

PER_PAGE = 60
MAX_IDS = 1000  # one bulk action at most; a page holds PER_PAGE


def review_changelist(request: HttpRequest, model_admin: admin.ModelAdmin) -> Any:
    """The image changelist's own ChangeList (filters, search, ordering), paged
    for the grid: the same query string gives the same images in the same order."""
    list_display = ["action_checkbox", *model_admin.get_list_display(request)]
    return ChangeList(
        request,
        model_admin.model,
        list_display,
        model_admin.get_list_display_links(request, list_display),
        model_admin.get_list_filter(request),
        model_admin.date_hierarchy,
        model_admin.get_search_fields(request),
        False,  # the cards need no related rows
        PER_PAGE,
        PER_PAGE,
        (),
        model_admin,
        model_admin.get_sortable_by(request),
        model_admin.search_help_text,
    )


def review_grid(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    try:
        cl = review_changelist(request, model_admin)
    except IncorrectLookupParameters:
        # As the changelist does: drop the bad filters and say so.
        return HttpResponseRedirect(f"{request.path}?{ERROR_FLAG}=1")
    cards = review_cards(cl.result_list)
    page = cl.paginator.page(cl.page_num)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Review images",
        "opts": model_admin.opts,
        "cl": cl,
        "cards": cards,
        "page": page,
        "query": _query(request, drop=("p",)),
        "changelist_query": _query(request, drop=("p", ERROR_FLAG)),
        "can_change": model_admin.has_change_permission(request),
        "thumbnail_size": THUMBNAIL_SIZE,
        "bad_filters": ERROR_FLAG in request.GET,
        "active_filters": _active_filters(cl),
    }
    return TemplateResponse(request, "admin/labeling/review/grid.html", context)


@require_POST
def review_act(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> JsonResponse:
    """One key press or bulk action: {"action": ..., "ids": [...], "caption": ...}.
    Answers {"cards": [...]} with the cards as they now are, or {"error": ...}."""
    if not model_admin.has_change_permission(request):
        return JsonResponse({"error": "You may not change images."}, status=403)
    try:
        action, ids, body = _parse(request)
        _apply(request, action, ids, body)
    except DomainError as exc:
        return JsonResponse({"error": exc.message}, status=exc.status)
    return JsonResponse({"cards": [card.as_json() for card in review_cards_for(ids)]})


ACTIONS = ("approve", "reject", "unreviewed", "nsfw", "safe", "caption")


def _parse(request: HttpRequest) -> tuple[str, list[int], dict[str, Any]]:
    try:
        body = json.loads(request.body or b"{}")
        ids = [int(pk) for pk in body.get("ids", [])]
    except (ValueError, TypeError, AttributeError):
        raise Invalid("Send JSON: {action, ids}.") from None
    action = body.get("action")
    if action not in ACTIONS:
        raise Invalid(f"Unknown action {action!r}.")
    if not ids or len(ids) > MAX_IDS:
        raise Invalid(f"Choose between 1 and {MAX_IDS} images.")
    return action, ids, body


def _apply(request: HttpRequest, action: str, ids: list[int], body: dict) -> None:
    if Image.objects.filter(pk__in=ids).count() != len(set(ids)):
        # Deleted in another tab meanwhile: say so rather than answer nothing.
        raise NotFound("Some of these images no longer exist; reload the page.")
    review = {"approve": "approved", "reject": "rejected", "unreviewed": "unreviewed"}
    if action in review:
        images_review_set(image_ids=ids, review=review[action])
    elif action in ("nsfw", "safe"):
        images_set(image_ids=ids, is_nsfw=action == "nsfw")
    else:
        _caption(request, ids, body.get("caption"))


def _caption(request: HttpRequest, ids: list[int], text: Any) -> None:
    if len(ids) != 1 or not isinstance(text, str) or not text.strip():
        raise Invalid("A caption edit needs one image and some text.")
    image = Image.objects.get(pk=ids[0])
    # The image page's own write (ImageLabelsForm.save_labels): a person's
    # approved caption, which the dataset then trains with.
    image_caption_set(image=image, text=text, user=request.user)


def _active_filters(cl: ChangeList) -> list[tuple[str, str]]:
    """(title, choice) of each filter in use, and the search, for the heading."""
    active = [
        (str(spec.title), str(choice["display"]))
        for spec in cl.filter_specs
        if spec.used_parameters
        for choice in spec.choices(cl)
        if choice["selected"]
    ]
    if cl.query:
        active.append(("search", cl.query))
    return active


def _query(request: HttpRequest, *, drop: tuple[str, ...]) -> str:
    params = request.GET.copy()
    for name in drop:
        params.pop(name, None)
    return params.urlencode()
