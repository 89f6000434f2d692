"""The set template editor (its rows as a table, or pasted as CSV) and the
"Generate set" form, shared by the admin pages."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from training.generation.services import (
    default_base_model,
    parse_lora_lines,
    scheduler_names,
)
from training.models import SetTemplate
from training.sets import templates as tpl
from training.sets.services import MAX_VARIANTS, SetRequest

BLANK_ROWS = 3  # empty table rows offered for adding slots
TEMPLATE_FIELDS = (
    "name",
    "slug",
    "description",
    "base_prompt",
    "prompt_template",
    "style_suffix",
    "example_theme",
    "width",
    "height",
    "negative_prompt",
    "base_model",
)


class RowTable(forms.Widget):
    """The template's rows as a table of inputs: key, label and one cell per
    column, plus a few blank rows. A row whose cells are all empty is dropped."""

    def __init__(self, columns: list[str] | None = None) -> None:
        super().__init__()
        self.columns = columns or []

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[dict]:
        rows = []
        for index in range(int(data.get(f"{name}-count") or 0)):
            cells = {
                part: data.get(f"{name}-{index}-{part}", "").strip()
                for part in (*tpl.RESERVED_COLUMNS, *self.columns)
            }
            if any(cells.values()):
                rows.append(cells)
        return rows

    def render(
        self, name: str, value: Any, attrs: Any = None, renderer: Any = None
    ) -> SafeString:
        rows = [
            {"key": r["key"], "label": r["label"], **r["values"]}
            if "values" in r
            else r
            for r in (value or [])
        ]
        rows += [{}] * BLANK_ROWS
        parts = [*tpl.RESERVED_COLUMNS, *self.columns]
        head = format_html_join("", "<th>{}</th>", ((p,) for p in parts))
        body = format_html_join(
            "",
            "<tr>{}</tr>",
            (
                (
                    format_html_join(
                        "",
                        '<td><input type="text" name="{}-{}-{}" value="{}" '
                        'aria-label="row {} {}"></td>',
                        ((name, i, p, row.get(p, ""), i + 1, p) for p in parts),
                    ),
                )
                for i, row in enumerate(rows)
            ),
        )
        return format_html(
            '<input type="hidden" name="{}-count" value="{}">'
            '<div class="set-rows-scroll"><table class="imagineer-results set-rows">'
            "<thead><tr>{}</tr></thead><tbody>{}</tbody></table></div>",
            name,
            len(rows),
            head,
            body,
        )


def lora_lines(loras: list[dict[str, Any]]) -> str:
    return "\n".join(
        e["name"] if e.get("weight") is None else f"{e['name']}:{e['weight']:g}"
        for e in loras
    )


class SetTemplateForm(forms.ModelForm):
    """The editor. The rows come from the CSV box when something was pasted
    there, else from the table; columns are named in their own field."""

    columns_text = forms.CharField(
        label="Columns",
        help_text="Comma-separated, in table order; each is a {placeholder} of "
        "the prompt template. Save after changing them to get their table cells.",
        widget=forms.TextInput(attrs={"size": 80}),
        required=False,
    )
    rows_table = forms.Field(
        label="Slots",
        required=False,
        help_text="One slot per row. Key: lower-case letters, digits and '-' "
        "(the file name in exports); left empty, it is made from the label, and "
        "the label from the values. Clear a row's cells to remove it.",
    )
    csv = forms.CharField(
        label="Paste CSV",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
        help_text="Replaces columns and slots: the header row names the columns "
        "('key' and 'label' optional).",
    )
    lora_text = forms.CharField(
        label="Default LoRAs",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 40}),
        help_text="One per line as NAME:WEIGHT (NAME alone: its default weight).",
    )

    class Meta:
        model = SetTemplate
        fields = TEMPLATE_FIELDS
        widgets = {
            "base_prompt": forms.TextInput(attrs={"size": 80}),
            "prompt_template": forms.TextInput(attrs={"size": 80}),
            "style_suffix": forms.TextInput(attrs={"size": 80}),
            "negative_prompt": forms.TextInput(attrs={"size": 80}),
            "description": forms.Textarea(attrs={"rows": 2, "cols": 80}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        template = self.instance
        self.fields["slug"].required = False
        self.fields["columns_text"].initial = ", ".join(template.columns)
        self.fields["rows_table"].widget = RowTable(list(template.columns))
        self.fields["rows_table"].initial = template.rows
        self.fields["lora_text"].initial = lora_lines(template.loras)

    def template_data(self) -> dict[str, Any]:
        """The fields to give set_template_update (after is_valid)."""
        # Not Meta.fields: the admin's subclass lists its fieldsets there.
        data = {name: self.cleaned_data[name] for name in TEMPLATE_FIELDS}
        data["slug"] = data["slug"] or ""
        data["loras"] = [
            {"name": name, "weight": weight}
            for name, weight in parse_lora_lines(self.cleaned_data["lora_text"])
        ]
        if self.cleaned_data["csv"].strip():
            data["csv"] = self.cleaned_data["csv"]
        else:
            data["columns"] = [
                c.strip() for c in self.cleaned_data["columns_text"].split(",")
            ]
            data["columns"] = [c for c in data["columns"] if c]
            data["rows"] = self.cleaned_data["rows_table"] or []
        return data


class GenerateSetForm(forms.Form):
    template = forms.ModelChoiceField(
        queryset=SetTemplate.objects.all(), to_field_name="slug"
    )
    theme = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="'Art style: <theme>' in every prompt; empty: the template's "
        "example theme.",
    )
    album = forms.CharField(
        required=False,
        max_length=200,
        help_text="The set album, made if missing; an album holding this set "
        "already is added to. Empty: '<template> – <theme>'.",
    )
    loras = forms.CharField(
        label="LoRAs",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 40}),
        help_text="One per line as NAME:WEIGHT; empty: the template's defaults.",
    )
    insert_trigger_words = forms.BooleanField(required=False, initial=True)
    seed = forms.IntegerField(
        required=False,
        label="Set seed",
        help_text="Each slot's seed derives from it and the slot's key; empty: "
        "the album's (or a random one for a new set).",
    )
    variants = forms.IntegerField(
        initial=1, min_value=1, max_value=MAX_VARIANTS, label="Variants per slot"
    )
    slots = forms.CharField(
        required=False,
        help_text="Slot keys, comma-separated; empty: every slot.",
        widget=forms.TextInput(attrs={"size": 60}),
    )
    only_missing = forms.BooleanField(
        required=False, help_text="Render only the slots not filled yet."
    )
    steps = forms.IntegerField(initial=25)
    guidance = forms.FloatField(initial=7.5, label="Guidance scale")
    scheduler = forms.ChoiceField(initial="ddim")
    width = forms.IntegerField(required=False, help_text="Empty: the template's.")
    height = forms.IntegerField(required=False, help_text="Empty: the template's.")
    negative_prompt = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Empty: the template's.",
    )
    base_model = forms.CharField(
        required=False, help_text="A local diffusers folder or hub id."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["scheduler"].choices = [(n, n) for n in scheduler_names()]
        placeholder = default_base_model() or settings.GENERATION_BASE_MODEL
        self.fields["base_model"].widget.attrs["placeholder"] = placeholder

    def to_request(self) -> SetRequest:
        data = self.cleaned_data
        loras = parse_lora_lines(data["loras"])
        return SetRequest(
            template=data["template"].pk,
            album=data["album"],
            theme=data["theme"] or None,
            loras=loras or None,
            base_model=data["base_model"] or None,
            width=data["width"],
            height=data["height"],
            steps=data["steps"],
            guidance=data["guidance"],
            scheduler=data["scheduler"],
            negative_prompt=data["negative_prompt"] or None,
            seed=data["seed"],
            variants=data["variants"],
            slots=tuple(k for k in re.split(r"[\s,]+", data["slots"]) if k),
            only_missing=data["only_missing"],
            insert_trigger_words=data["insert_trigger_words"],
        )
