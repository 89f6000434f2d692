"""The intermediate page of an admin action that needs input first ("Add to
album…", "Label with Claude…"): show a form, then apply it to the selection.

The page posts back the changelist's own selection (ids and select_across),
so Django rebuilds the same queryset when the form is applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse


def action_step(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    action: str,
    title: str,
    form: Callable[[Any], forms.Form],
    apply: Callable[[dict[str, Any]], HttpResponse | None],
    note: str = "",
    empty_note: str = "",
) -> HttpResponse | None:
    """`form(data)` builds the form (data None: unbound); `apply` gets its
    cleaned data once it is valid. `empty_note` replaces the form when there
    is nothing to choose from."""
    bound = form(request.POST if "apply" in request.POST else None)
    if bound.is_valid():
        return apply(bound.cleaned_data)
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.opts,
        "form": bound,
        "media": modeladmin.media + bound.media,
        "action": action,
        "note": note,
        "empty_note": empty_note,
        "count": queryset.count(),
        "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/imagineer/action_form.html", context)
