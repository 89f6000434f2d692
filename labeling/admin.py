"""Admin for labels: browse and correct captions, tags and notes across images."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.html import format_html

from labeling.models import Label


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = (
        "thumbnail",
        "image",
        "kind",
        "excerpt",
        "source",
        "model_name",
        "confidence",
        "created",
    )
    list_display_links = ("excerpt",)
    list_filter = ("kind", "source", "model_name")
    search_fields = ("text",)
    list_select_related = ("image",)
    raw_id_fields = ("image", "author")
    readonly_fields = ("created", "updated")
    fields = (
        "image",
        "kind",
        "text",
        "source",
        "model_name",
        "prompt_version",
        "confidence",
        "author",
        "created",
        "updated",
    )

    class Media:
        css = {"all": ("imagineer/admin.css",)}

    @admin.display(description="")
    def thumbnail(self, obj: Label) -> str:
        # The URL needs only image_id: no storage call, no extra query.
        return format_html(
            '<a href="{}"><img src="{}?size=256" width="48" height="48" '
            'class="imagineer-thumb" loading="lazy" alt=""></a>',
            reverse("admin:albums_image_change", args=[obj.image_id]),
            obj.image.thumbnail_url,
        )

    @admin.display(description="text", ordering="text")
    def excerpt(self, obj: Label) -> str:
        return truncatechars(obj.text, 80)

    def save_model(
        self, request: HttpRequest, obj: Label, form: Any, change: bool
    ) -> None:
        if not change and obj.author_id is None and obj.source == Label.Source.HUMAN:
            obj.author = request.user
        super().save_model(request, obj, form, change)
