"""Showing a domain error on a form: every field an Invalid names gets its
message under that field; anything else goes above the form."""

from __future__ import annotations

from collections.abc import Mapping

from django import forms

from imagineer_project.errors import DomainError, Invalid


def add_domain_error(
    form: forms.Form, exc: DomainError, *, fields: Mapping[str, str] | None = None
) -> None:
    """`fields` maps the error's field names to the form's where they differ
    ({"url": "start_url"})."""
    names = fields or {}
    if not isinstance(exc, Invalid) or not exc.errors:
        form.add_error(None, exc.message)
        return
    for name, message in exc.errors.items():
        field = names.get(name, name)
        text = message[:1].upper() + message[1:]
        text = text if text.endswith((".", "?", "!")) else f"{text}."
        form.add_error(field if field in form.fields else None, text)
