"""Admin for API tokens. django-q2 registers its own admin (tasks, schedules)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from imagineer_project.admin_pages import ImagineerAdmin
from imagineer_project.models import ApiToken
from imagineer_project.tokens import api_token_create


class ApiTokenCreateForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(),
        help_text="Calls made with the token act as this user, with their permissions.",
    )
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="What will use it (a script, a machine), to tell tokens apart.",
    )

    def __init__(self, *args: Any, request: HttpRequest, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        users = get_user_model().objects.filter(is_active=True).order_by("username")
        if not request.user.is_superuser:
            # A token acts as its user: only a superuser may act for another
            # (a staff user minting a superuser's token would gain its rights).
            users = users.filter(pk=request.user.pk)
        self.fields["user"].queryset = users


@admin.register(ApiToken)
class ApiTokenAdmin(ImagineerAdmin):
    list_display = ("prefix", "user", "name", "created", "last_used")
    list_filter = ("created", "last_used")
    search_fields = ("prefix", "name", "user__username")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    # key_hash is deliberately absent: it is never shown, not even read-only.
    fields = ("prefix", "user", "name", "created", "last_used")
    readonly_fields = ("prefix", "user", "created", "last_used")
    actions = ("revoke",)

    def add_page(self, request: HttpRequest) -> HttpResponse:
        """The token is made by the same service as `manage.py
        create_api_token`, and its plain text is on the answer to the POST
        only: never stored, never on a page that can be loaded again."""
        if request.method == "POST":
            form = ApiTokenCreateForm(request.POST, request=request)
        else:
            form = ApiTokenCreateForm(
                initial={"user": request.user.pk}, request=request
            )
        if request.method == "POST" and form.is_valid():
            return self._created(request, form)
        return self.form_page(
            request,
            form,
            title="Add API token",
            template="admin/imagineer/apitoken/add_form.html",
        )

    def _created(self, request: HttpRequest, form: ApiTokenCreateForm) -> HttpResponse:
        token, plain = api_token_create(
            user=form.cleaned_data["user"], name=form.cleaned_data["name"]
        )
        self.log_addition(request, token, [{"added": {}}])
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "opts": self.opts,
            "token": token,
            "plain": plain,
            "media": self.media,
        }
        response = TemplateResponse(
            request, "admin/imagineer/apitoken/created.html", context
        )
        # The one page that holds the token: no cache may keep a copy.
        response["Cache-Control"] = "no-store"
        return response

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # "Revoke" is the delete action under its own name: one, not both.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Revoke selected API tokens", permissions=["delete"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        # Revoking is deleting: only the hash was stored, and it goes.
        count, _ = queryset.delete()
        self.message_user(request, f"Revoked {count} API token(s).", messages.SUCCESS)


# Registered by importing: bug reports and maintenance runs have admins of their own.
from imagineer_project.bug_reports import admin as _bug_reports_admin  # noqa: E402, F401
from imagineer_project.maintenance import admin as _maintenance_admin  # noqa: E402, F401
