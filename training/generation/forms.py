"""The generate form, shared by the admin and the staff page (/generate/)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.http import QueryDict

from training.generation.services import (
    GenerationRequest,
    default_base_model,
    parse_lora_lines,
    scheduler_names,
)
from training.models import Lora
from training.paths import base_model_name

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


class GenerateForm(forms.Form):
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}))
    negative_prompt = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 80})
    )
    loras = forms.CharField(
        label="LoRAs",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 40}),
        help_text="One per line as NAME:WEIGHT (NAME alone takes its default "
        "weight). The registered LoRAs are listed below.",
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
        required=False, help_text="A local diffusers folder or hub id."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["scheduler"].choices = [(n, n) for n in scheduler_names()]
        self.fields["album"].widget.attrs["placeholder"] = (
            settings.GENERATION_DEFAULT_ALBUM
        )
        self.fields["base_model"].widget.attrs["placeholder"] = base_model_name(
            default_base_model()
        )
        low, high = settings.GENERATION_MIN_SIZE, settings.GENERATION_MAX_SIZE
        for side in ("width", "height"):
            self.fields[side].help_text = f"A multiple of 8 from {low} to {high}."

    @classmethod
    def initial_from_query(cls, query: QueryDict) -> dict[str, Any]:
        """Initial values from a query string (the image page's "generate again")."""
        initial: dict[str, Any] = {k: query[k] for k in FIELDS if k in query}
        if "insert_trigger_words" in initial:
            initial["insert_trigger_words"] = query["insert_trigger_words"].lower() in (
                "1",
                "true",
                "on",
                "yes",
            )
        return initial

    def to_request(self) -> GenerationRequest:
        data = self.cleaned_data
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
            loras=tuple(parse_lora_lines(data["loras"])),
            insert_trigger_words=data["insert_trigger_words"],
            album=data["album"],
            base_model=data["base_model"],
        )


def lora_choices() -> list[Lora]:
    """The registered LoRAs the form offers, with trigger words and weights."""
    return list(
        Lora.objects.only(
            "name", "trigger_words", "default_weight", "base_model", "created"
        ).order_by("name")
    )
