"""What every model admin of ours shares: our stylesheet, extra views on one
object (a URL, a 404 and a permission check), and pages that are a form of
their own (build, upload, generate, import) rather than the model's add form.

Run admins add imagineer_project.run_admin.RunAdmin on top of this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

F = TypeVar("F", bound=forms.Form)

# Fields every run's page shows, first and last (RunAdmin pages splice them in).
RUN_STATE_FIELDS = ("status", "progress_bar", "message", "error")
RUN_HISTORY_FIELDS = (
    "created",
    "started_at",
    "heartbeat_at",
    "finished_at",
    "attempts",
)


class ImagineerAdmin(admin.ModelAdmin):
    """Subclasses may give the model a page of their own in place of its add
    form (`add_page`), and add to the change page's context (`change_context`)
    without overriding the views themselves."""

    # (request) -> response: a form of our own (build, import, generate) in
    # place of the model's add form. None keeps Django's.
    add_page: Callable[[HttpRequest], HttpResponse] | None = None

    class Media:
        css = {"all": ("imagineer/admin.css",)}

    def add_view(
        self,
        request: HttpRequest,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if self.add_page is None:
            return super().add_view(request, form_url, extra_context)
        self.require_add(request)
        return self.add_page(request)

    def change_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        """More context for the change page of `obj`."""
        return {}

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        # Django has fetched `obj` already: no second query for the context.
        if change:
            context.update(self.change_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def object_url(
        self,
        suffix: str,
        view: Callable[..., HttpResponse],
        *,
        name: str = "",
        post_only: bool = False,
    ) -> URLPattern:
        """`<id>/<suffix>/`, named `<app>_<model>_<name or suffix>`, behind the
        admin's login (and POST only when it changes something)."""
        opts = self.opts
        wrapped = require_POST(view) if post_only else view
        return path(
            f"<path:object_id>/{suffix}/",
            self.admin_site.admin_view(wrapped),
            name=f"{opts.app_label}_{opts.model_name}_{name or suffix}",
        )

    def object_or_404(
        self, request: HttpRequest, object_id: str, *, change: bool = True
    ) -> Any:
        """The object an extra view acts on; 404 when there is none, 403 when
        the user may not change it (or, with change=False, view it)."""
        obj: Model | None = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No such {self.opts.verbose_name}.")
        allowed = self.has_change_permission if change else self.has_view_permission
        if not allowed(request, obj):
            raise PermissionDenied
        return obj

    def require_add(self, request: HttpRequest) -> None:
        if not self.has_add_permission(request):
            raise PermissionDenied

    @staticmethod
    def posted(request: HttpRequest, form_class: type[F], **initial: Any) -> F:
        """`form_class` bound to what was posted (files too), or unbound with
        `initial` for a GET."""
        if request.method == "POST":
            return form_class(request.POST, request.FILES)
        return form_class(initial=initial or None)

    def form_view(
        self,
        request: HttpRequest,
        form: forms.Form,
        *,
        save: Callable[[Any], HttpResponse | None],
        title: str,
        template: str,
        **extra: Any,
    ) -> HttpResponse:
        """A page of our own that saves through a service: a valid POST goes
        to `save(form)`, which answers where to go next, or None when it put
        the service's refusal on the form; otherwise the form (again)."""
        if request.method == "POST" and form.is_valid():
            done = save(form)
            if done is not None:
                return done
        return self.form_page(request, form, title=title, template=template, **extra)

    def form_page(
        self,
        request: HttpRequest,
        form: forms.Form,
        *,
        title: str,
        template: str,
        **extra: Any,
    ) -> TemplateResponse:
        """A page of our own with `form` (templates extend
        admin/imagineer/form_page.html)."""
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
            **extra,
        }
        return TemplateResponse(request, template, context)
