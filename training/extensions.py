"""What training adds to albums' pages and API (see albums.extensions): a
generated image's recipe, on its page and in the image detail API, with local
base-model paths hidden from visitors. Registered from TrainingConfig.ready()."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef
from django.http import HttpRequest
from django.urls import reverse

from albums.extensions import DetailField, PagePart, registry
from albums.models import Album, Image
from imagineer_project.permissions import is_staff
from training.generation.selectors import (
    image_recipe,
    recipe_for_viewer,
    recipe_form_query,
)
from training.models import ImageRecipe, SetAlbum
from training.sets.selectors import FILLED, set_album_of, slot_counts, slot_statuses


def recipe_value(image: Image, request: HttpRequest | None) -> dict[str, Any] | None:
    recipe = image_recipe(image)  # the reverse one-to-one: one query
    staff = request is not None and is_staff(request)
    return recipe and recipe_for_viewer(recipe, staff=staff)


def recipe_context(request: HttpRequest, image: Image) -> dict[str, Any] | None:
    """A generated image's recipe, and for staff the link that fills the
    generate form with it."""
    if not getattr(image, HAS_RECIPE, True):
        return None  # the image page's query says it has none: no query here
    recipe = image_recipe(image)
    if recipe is None:
        return None
    staff = is_staff(request)
    context: dict[str, Any] = {"recipe": recipe_for_viewer(recipe, staff=staff)}
    if staff:
        context["generate_again_url"] = (
            f"{reverse('generate-page')}?{recipe_form_query(context['recipe'])}"
        )
    return context


HAS_RECIPE = "training_has_recipe"


def recipe_annotations() -> dict[str, Any]:
    return {HAS_RECIPE: Exists(ImageRecipe.objects.filter(image=OuterRef("pk")))}


IS_SET_ALBUM = "training_is_set_album"


def set_slots_annotations() -> dict[str, Any]:
    return {IS_SET_ALBUM: Exists(SetAlbum.objects.filter(album=OuterRef("pk")))}


def set_slots_context(request: HttpRequest, album: Album) -> dict[str, Any] | None:
    """A set album's slot grid: staff see every slot (missing and failed ones
    as placeholders); visitors only the filled slots whose image they may see."""
    if not getattr(album, IS_SET_ALBUM, True):
        return None  # the album page's query says it is not a set: no query here
    set_album = set_album_of(album)
    if set_album is None:
        return None
    slots = slot_statuses(set_album)
    counts = {**slot_counts(slots), "total": len(slots)}
    staff = is_staff(request)
    if not staff:
        visible = set(
            Image.objects.visible_to(request.user)
            .filter(pk__in=[s.image_id for s in slots if s.status == FILLED])
            .values_list("pk", flat=True)
        )
        slots = [s for s in slots if s.image_id in visible]
    return {
        "set_album": set_album,
        "slots": slots,
        "counts": counts,
        "staff": staff,
        "not_staff": not staff,
    }


def register() -> None:
    registry.add_image_page_part(
        PagePart(
            "recipe",
            "training/_image_recipe.html",
            recipe_context,
            20,
            annotations=recipe_annotations,
        )
    )
    registry.add_image_detail_field(DetailField("recipe", recipe_value))
    registry.add_album_page_part(
        PagePart(
            "set-slots",
            "training/sets/_album_slots.html",
            set_slots_context,
            5,
            annotations=set_slots_annotations,
        )
    )
