"""The generate form, shared by the admin and the staff page (/generate/).

Registered LoRAs are picked from a list (`lora_<pk>` ticks, `lora_<pk>_weight`
weights); the `loras` text (NAME:WEIGHT lines) still works, as in the API and
the CLI. The base model follows the picked LoRAs, and size and steps start
from the base model's own (services.base_model_defaults).

Query parameters fill it: `lora=<pk>` (repeatable: ticked, base model and
trigger words preset), `album=<pk>`, `base_model=<id>`, `from_image=<pk>` (an
image's recipe, with a new seed), and any field by name.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.http import QueryDict

from albums.models import Album, Image
from training.generation.selectors import image_recipe
from training.generation.services import (
    WEIGHT_RANGE,
    GenerationRequest,
    base_model_defaults,
    default_base_model,
    parse_lora_lines,
    same_base_model,
    scheduler_names,
)
from training.models import Lora
from training.paths import base_model_location, base_model_name
from training.registry import base_model_family

FIELDS = (
    "prompt",
    "negative_prompt",
    "loras",
    "insert_trigger_words",
    "steps",
    "guidance",
    "scheduler",
    "seed",
    "width",
    "height",
    "num_images",
    "album",
    "base_model",
)
RECIPE_FIELDS = (
    "prompt",
    "negative_prompt",
    "base_model",
    "steps",
    "guidance",
    "scheduler",
    "width",
    "height",
)
TRUE = ("1", "true", "on", "yes")


class GenerateForm(forms.Form):
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}))
    negative_prompt = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 80})
    )
    loras = forms.CharField(
        label="More LoRAs",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 40}),
        help_text="Optional, as the API and CLI take them: one per line as "
        "NAME:WEIGHT (NAME alone takes its default weight).",
    )
    insert_trigger_words = forms.BooleanField(
        required=False,
        initial=True,
        label="Insert trigger words",
        help_text="Put each LoRA's trigger words in front of the prompt "
        "(those it does not already contain).",
    )
    steps = forms.IntegerField(initial=25)
    guidance = forms.FloatField(initial=7.5, label="Guidance scale")
    scheduler = forms.ChoiceField(initial="ddim")
    seed = forms.IntegerField(
        required=False, help_text="Empty for a random seed (always recorded)."
    )
    width = forms.IntegerField(initial=512)
    height = forms.IntegerField(initial=512)
    num_images = forms.IntegerField(initial=1, label="Images")
    album = forms.CharField(
        required=False,
        help_text="Album name (made if missing); empty for the default album.",
    )
    base_model = forms.CharField(
        required=False,
        help_text="A local diffusers folder or hub id. Empty: the picked LoRAs' "
        "base model, else the default.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["scheduler"].choices = [(n, n) for n in scheduler_names()]
        self.fields["album"].widget.attrs["placeholder"] = (
            settings.GENERATION_DEFAULT_ALBUM
        )
        self.default_model = base_model_name(default_base_model())
        self.fields["base_model"].widget.attrs["placeholder"] = self.default_model
        low, high = settings.GENERATION_MIN_SIZE, settings.GENERATION_MAX_SIZE
        for side in ("width", "height"):
            self.fields[side].help_text = f"A multiple of 8 from {low} to {high}."
        self.family = base_model_family(self._base_model_asked())
        self.registered = lora_choices(self.family)
        for lora in self.registered:
            self.fields[f"lora_{lora.pk}"] = forms.BooleanField(
                required=False, label=lora.name
            )
            self.fields[f"lora_{lora.pk}_weight"] = forms.FloatField(
                required=False,
                initial=lora.default_weight,
                min_value=WEIGHT_RANGE[0],
                max_value=WEIGHT_RANGE[1],
                label=f"Weight of {lora.name}",
                widget=forms.NumberInput(attrs={"step": "0.05"}),
            )
        if not self.is_bound:
            self._initial_size_and_steps()
        self.note = self.initial.get("note", "")

    def _base_model_asked(self) -> str:
        """The base model the form is for: as posted, else as preset (a
        query's), else the default; as a location, so its family is read."""
        source = self.data if self.is_bound else self.initial
        asked = str(source.get("base_model") or "").strip()
        return base_model_location(asked or default_base_model())

    def _initial_size_and_steps(self) -> None:
        model = self.initial.get("base_model") or default_base_model()
        for name, value in base_model_defaults(model).items():
            self.initial.setdefault(name, value)

    # --- what the template shows ---------------------------------------------------

    def main_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in FIELDS if name != "loras"]  # in the picker

    def lora_rows(self) -> list[dict[str, Any]]:
        """Each registered LoRA with its tick, weight, trigger words and the
        base model (with that model's size and steps) it was made for."""
        defaults: dict[str, dict[str, int]] = {}
        rows = []
        for lora in self.registered:
            shown = base_model_name(lora.base_model)
            if shown not in defaults:  # each distinct model's files read once
                defaults[shown] = base_model_defaults(lora.base_model or "")
            rows.append(
                {
                    "lora": lora,
                    "use": self[f"lora_{lora.pk}"],
                    "weight": self[f"lora_{lora.pk}_weight"],
                    "base_model": shown,
                    "family": lora.get_family_display() if lora.family else "",
                    "defaults": defaults[shown],
                }
            )
        return rows

    # --- checking -------------------------------------------------------------------

    def picked(self) -> list[tuple[Lora, float]]:
        data = self.cleaned_data
        return [
            (
                lora,
                lora.default_weight
                if data.get(f"lora_{lora.pk}_weight") is None
                else data[f"lora_{lora.pk}_weight"],
            )
            for lora in self.registered
            if data.get(f"lora_{lora.pk}")
        ]

    def clean(self) -> dict[str, Any]:
        """The picked LoRAs must share a base model, which an empty base model
        field then takes."""
        data = super().clean()
        models = {}
        picked = [lora for lora, _ in self.picked()]
        for lora in picked:
            if lora.base_model.strip():
                models.setdefault(base_model_name(lora.base_model), []).append(lora)
        first = next(iter(models), "")
        families = {lora.family for lora in picked}
        # LoRAs of one known family fit together whatever checkpoint of it
        # each was trained on (services.lora_fit_problem).
        one_family = len(families) == 1 and "" not in families
        if len(families - {""}) > 1:
            mixed = "; ".join(
                f"{lora.name} ({lora.get_family_display()})"
                for lora in picked
                if lora.family
            )
            self.add_error(
                "loras",
                f"The picked LoRAs are of different model families ({mixed}). "
                "Pick LoRAs of one family.",
            )
        elif not one_family and any(
            not same_base_model(first, other) for other in models
        ):
            mixed = "; ".join(
                f"{', '.join(lora.name for lora in loras)} on {model}"
                for model, loras in models.items()
            )
            self.add_error(
                "loras",
                f"The picked LoRAs were made for different base models ({mixed}). "
                "Pick LoRAs of one base model.",
            )
        elif first:
            # Empty, or the LoRAs' model by its shown name (what generate.js
            # puts there): the LoRAs' own base model, so a folder is found.
            typed = (data.get("base_model") or "").strip()
            if not typed or same_base_model(typed, first):
                data["base_model"] = models[first][0].base_model
        return data

    # --- filling from a query -------------------------------------------------------

    @classmethod
    def initial_from_query(cls, query: QueryDict) -> dict[str, Any]:
        """Initial values from a query string: `from_image`, `lora`, `album`
        and any field by name (the image page's "generate again")."""
        initial: dict[str, Any] = {}
        if query.get("from_image", "").isdigit():
            initial.update(_from_image(int(query["from_image"])))
        initial.update({k: query[k] for k in FIELDS if k in query})
        if "insert_trigger_words" in query:
            initial["insert_trigger_words"] = (
                query["insert_trigger_words"].lower() in TRUE
            )
        picks = [int(pk) for pk in query.getlist("lora") if pk.isdigit()]
        if picks:
            initial.update(_from_loras(picks, initial))
        if query.get("album", "").isdigit():
            album = Album.objects.filter(pk=int(query["album"])).only("name").first()
            initial["album"] = album.name if album else ""
        return initial

    def to_request(self) -> GenerationRequest:
        data = self.cleaned_data
        picked = [(lora.pk, weight) for lora, weight in self.picked()]
        return GenerationRequest(
            prompt=data["prompt"],
            negative_prompt=data["negative_prompt"],
            steps=data["steps"],
            guidance=data["guidance"],
            seed=data["seed"],
            width=data["width"],
            height=data["height"],
            scheduler=data["scheduler"],
            num_images=data["num_images"],
            loras=(*picked, *parse_lora_lines(data["loras"])),
            insert_trigger_words=data["insert_trigger_words"],
            album=data["album"],
            base_model=data["base_model"],
        )


def _from_loras(picks: list[int], initial: dict[str, Any]) -> dict[str, Any]:
    """Tick the LoRAs, take their base model, lead the prompt with their
    trigger words."""
    loras = list(Lora.objects.filter(pk__in=picks).order_by("name"))
    words = [w for lora in loras for w in lora.trigger_words]
    found: dict[str, Any] = {f"lora_{lora.pk}": True for lora in loras}
    model = next((lora.base_model for lora in loras if lora.base_model), "")
    if model and "base_model" not in initial:
        found["base_model"] = base_model_name(model)
    if words and not initial.get("prompt"):
        found["prompt"] = ", ".join(dict.fromkeys(words)) + ", "
    return found


def _from_image(pk: int) -> dict[str, Any]:
    """Every field from a generated image's recipe, with a new seed (the old
    one is said in the note)."""
    image = Image.objects.select_related("recipe").filter(pk=pk).first()
    recipe = image_recipe(image) if image is not None else None
    if recipe is None:
        return {"note": f"Image #{pk} has no recipe to generate from."}
    initial: dict[str, Any] = {k: recipe[k] for k in RECIPE_FIELDS if k in recipe}
    initial["base_model"] = base_model_name(initial.get("base_model", ""))
    initial["insert_trigger_words"] = False  # its prompt has them already
    by_name = {lora.name: lora for lora in Lora.objects.all()}
    unknown = []
    for entry in recipe.get("loras", []):
        lora = by_name.get(entry["name"])
        if lora is None:
            unknown.append(f"{entry['name']}:{entry['weight']:g}")
            continue
        initial[f"lora_{lora.pk}"] = True
        initial[f"lora_{lora.pk}_weight"] = entry["weight"]
    initial["loras"] = "\n".join(unknown)
    initial["note"] = (
        f"Filled from image #{pk}'s recipe with a new seed (it was "
        f"{recipe.get('seed', '?')}; type it in the seed field to make the same "
        "image again)."
    )
    return initial


def lora_choices(family: str = "") -> list[Lora]:
    """The registered LoRAs the form offers, with trigger words and weights:
    those of `family` (and those of unknown family) when the base model's
    family is known, else all."""
    loras = Lora.objects.only(
        "name", "trigger_words", "default_weight", "base_model", "family", "created"
    ).order_by("name")
    if family:
        loras = loras.filter(family__in=[family, ""])
    return list(loras)
