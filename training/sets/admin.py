"""Admin for sets: the template editor (rows as a table or pasted CSV, with
a preview of the first prompts), "Generate set" as the set run's add page, a
set run's page (progress in slots and the set as it grows), and the set
album's page: the slot grid with fill-missing, regenerate and choose.

training/admin.py registers them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from imagineer_project.admin_pages import RUN_HISTORY_FIELDS, ImagineerAdmin
from imagineer_project.errors import DomainError
from imagineer_project.forms import add_domain_error
from imagineer_project.run_admin import RunAdmin
from training.models import SetAlbum, SetRun, SetTemplate
from training.sets.forms import GenerateSetForm, SetTemplateForm
from training.sets.selectors import slot_counts, slot_statuses
from training.sets.services import (
    SetInvalid,
    named_stack,
    set_fill_missing,
    set_run_create,
    set_slot_choose,
    set_slots_regenerate,
    set_template_check,
    set_template_preview,
    set_template_update,
    template_csv,
)
from training.sets.sheet import contact_sheet, set_file_stem, set_zip


def _preview_table(rows: list[dict[str, str]]) -> str:
    return format_html(
        '<table class="imagineer-results"><thead><tr><th>Slot</th><th>Prompt</th>'
        "</tr></thead><tbody>{}</tbody></table>",
        format_html_join(
            "",
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            ((row["key"], row["prompt"]) for row in rows),
        ),
    )


class SetTemplateAdmin(ImagineerAdmin):
    form = SetTemplateForm
    list_display = (
        "name",
        "slug",
        "slots",
        "column_names",
        "example_theme",
        "builtin",
        "edited",
        "run_count",
    )
    list_filter = ("builtin", "edited")
    search_fields = ("name", "slug", "description", "prompt_template")
    list_select_related = ("created_by",)
    raw_id_fields = ("created_by",)
    readonly_fields = ("preview", "builtin", "edited", "created_by", "created")
    change_form_template = "admin/training/settemplate/change_form.html"
    view_on_site = False  # its URL is this page
    fieldsets = (
        (None, {"fields": ("name", "slug", "description")}),
        (
            "Slots",
            {"fields": ("columns_text", "rows_table", "csv")},
        ),
        (
            "Prompt",
            {
                "fields": (
                    "preview",
                    "base_prompt",
                    "prompt_template",
                    "style_suffix",
                    "example_theme",
                    "negative_prompt",
                )
            },
        ),
        ("Rendering", {"fields": ("width", "height", "lora_text", "base_model")}),
        ("History", {"fields": ("builtin", "edited", "created_by", "created")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[SetTemplate]:
        return super().get_queryset(request).annotate(runs_total=Count("runs"))

    def get_urls(self) -> list[Any]:
        return [self.object_url("csv", self.csv_view), *super().get_urls()]

    def csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        template = self.object_or_404(request, object_id, change=False)
        response = HttpResponse(template_csv(template), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{template.slug}.csv"'
        return response

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        form_class = super().get_form(request, obj, **kwargs)

        class Checked(form_class):  # type: ignore[valid-type, misc]
            """The service checks the whole template; its errors go on the fields."""

            def clean(self) -> dict[str, Any]:
                cleaned = super().clean()
                if not self.errors:
                    try:
                        set_template_check(
                            template=self.instance, **self.template_data()
                        )
                    except SetInvalid as exc:
                        add_domain_error(
                            self,
                            exc,
                            fields={"columns": "columns_text", "rows": "rows_table"},
                        )
                return cleaned

        return Checked

    def save_model(
        self, request: HttpRequest, obj: SetTemplate, form: Any, change: bool
    ) -> None:
        if not change:
            obj.created_by = request.user
        set_template_update(template=obj, **form.template_data())

    def change_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        return {
            "generate_url": reverse("admin:training_setrun_add")
            + f"?template={obj.slug}"
        }

    @admin.display(description="slots")
    def slots(self, obj: SetTemplate) -> int:
        return obj.slot_count

    @admin.display(description="columns")
    def column_names(self, obj: SetTemplate) -> str:
        return ", ".join(obj.columns)

    @admin.display(description="runs", ordering="runs_total")
    def run_count(self, obj: SetTemplate) -> int:
        return obj.runs_total

    @admin.display(description="preview (example theme, first rows)")
    def preview(self, obj: SetTemplate) -> str:
        if not obj.pk:
            return "Save the template to see its prompts."
        return _preview_table(set_template_preview(obj, loras=_defaults(obj)))


def _defaults(template: SetTemplate) -> list[dict[str, Any]]:
    """The template's default LoRAs that are registered, for its preview."""
    return named_stack([e["name"] for e in template.loras], strict=False)


class SetRunAdmin(RunAdmin):
    progress_unit = " slots"
    cancel_label = "Cancel set run"
    cancel_note = "Cancel requested; it stops within a step and keeps its images."
    list_display = (
        "id",
        "template",
        "album_link",
        "mode",
        "status",
        "progress",
        "failed_items",
        "theme",
        "created_by",
        "created",
    )
    list_filter = ("status", "mode", "template")
    search_fields = ("theme", "message", "error", "set_album__album__name")
    list_select_related = ("template", "set_album__album", "created_by")
    raw_id_fields = ("set_album", "created_by")
    change_form_template = "admin/training/setrun/change_form.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "status",
                    "progress_bar",
                    "now_rendering",
                    "message",
                    "error",
                    "failed_items",
                )
            },
        ),
        (
            "Set",
            {
                "fields": (
                    "template",
                    "album_link",
                    "mode",
                    "theme",
                    "set_seed",
                    "variants",
                    "slot_list",
                    "settings",
                )
            },
        ),
        ("Run", {"fields": ("created_by", *RUN_HISTORY_FIELDS)}),
    )

    def add_page(self, request: HttpRequest) -> HttpResponse:
        """ "Generate set": a template, a theme, an album and the settings."""
        template = SetTemplate.objects.filter(
            slug=request.POST.get("template") or request.GET.get("template", "")
        ).first()
        initial = {"template": template.slug} if template else {}
        form = self.posted(request, GenerateSetForm, **initial)
        theme = request.POST.get("theme") or (template and template.example_theme)
        return self.form_view(
            request,
            form,
            save=lambda form: self._create(request, form),
            title="Generate set",
            template="admin/training/setrun/generate.html",
            preview=template and set_template_preview(template, theme=theme or ""),
            chosen=template,
        )

    def _create(
        self, request: HttpRequest, form: GenerateSetForm
    ) -> HttpResponse | None:
        try:
            run = set_run_create(
                request=form.to_request(), created_by=request.user, rate_limited=True
            )
        except DomainError as exc:
            add_domain_error(form, exc)
            return None
        self.message_user(
            request,
            f"Set run #{run.pk} queued: {len(run.slot_keys)} slot(s).",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self.run_url(run))

    def change_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        context = super().change_context(request, obj)
        if obj.set_album is None:
            return context
        slots = slot_statuses(obj.set_album)
        return {
            **context,
            "slots": slots,
            "counts": slot_counts(slots),
            "set_album": obj.set_album,
        }

    @admin.display(description="album")
    def album_link(self, obj: SetRun) -> str:
        if obj.set_album is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>', obj.set_album.get_absolute_url(), obj.set_album.album
        )

    @admin.display(description="now")
    def now_rendering(self, obj: SetRun) -> str:
        if not obj.is_active or not obj.current_slot:
            return "—"
        return (
            f"{obj.current_slot}: step {obj.current_step} of {obj.render.get('steps')}"
        )

    @admin.display(description="slots")
    def slot_list(self, obj: SetRun) -> str:
        return ", ".join(obj.slot_keys)

    @admin.display(description="settings")
    def settings(self, obj: SetRun) -> str:
        render = obj.render
        loras = ", ".join(
            f"{e['name']} {e['weight']:g}" for e in render.get("loras", [])
        )
        return (
            f"{render.get('width')}×{render.get('height')} px, {render.get('steps')} "
            f"steps, guidance {render.get('guidance')}, {render.get('scheduler')}; "
            f"LoRAs: {loras or 'none'}; base model {render.get('base_model')}"
        )


class SetAlbumAdmin(ImagineerAdmin):
    """A set album's page is its slot grid: what is filled, missing or failed,
    with the buttons that render what is missing, render chosen slots again,
    or let another variant fill a slot."""

    list_display = ("album", "template", "theme", "slot_total", "variants", "created")
    list_filter = ("template",)
    search_fields = ("album__name", "theme")
    list_select_related = ("album", "template")
    raw_id_fields = ("album",)
    readonly_fields = (
        "album",
        "template",
        "theme",
        "set_seed",
        "variants",
        "size",
        "steps",
        "guidance",
        "scheduler",
        "negative_prompt",
        "base_model",
        "lora_stack",
        "created",
    )
    fields = readonly_fields
    change_form_template = "admin/training/setalbum/change_form.html"
    view_on_site = False  # the album page is one of its tools

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a set album is made by generating a set

    def get_queryset(self, request: HttpRequest) -> QuerySet[SetAlbum]:
        return super().get_queryset(request).annotate(slots_total=Count("slots"))

    def get_urls(self) -> list[Any]:
        return [
            self.object_url("fill", self.fill_view, post_only=True),
            self.object_url("regenerate", self.regenerate_view, post_only=True),
            self.object_url("choose", self.choose_view, post_only=True),
            self.object_url("sheet.png", self.sheet_view, name="sheet"),
            self.object_url("export.zip", self.export_view, name="export"),
            *super().get_urls(),
        ]

    def change_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        slots = slot_statuses(obj)
        return {
            # The slots are the page; there is nothing to save.
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "slots": slots,
            "counts": slot_counts(slots),
            "runs": obj.runs.order_by("-id")[:10],
            "set_album": obj,
        }

    def _act(self, request: HttpRequest, object_id: str, act: Any) -> HttpResponse:
        set_album = self.object_or_404(request, object_id)
        try:
            outcome = act(set_album)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, outcome, messages.SUCCESS)
        return HttpResponseRedirect(set_album.get_absolute_url())

    def fill_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def fill(set_album: SetAlbum) -> str:
            run = set_fill_missing(
                album=set_album.album, created_by=request.user, rate_limited=True
            )
            return f"Set run #{run.pk} queued: {len(run.slot_keys)} missing slot(s)."

        return self._act(request, object_id, fill)

    def regenerate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def regenerate(set_album: SetAlbum) -> str:
            run = set_slots_regenerate(
                album=set_album.album,
                keys=request.POST.getlist("slot"),
                created_by=request.user,
                rate_limited=True,
            )
            return f"Set run #{run.pk} queued: {', '.join(run.slot_keys)} again."

        return self._act(request, object_id, regenerate)

    def choose_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def choose(set_album: SetAlbum) -> str:
            image_id = request.POST.get("image_id", "")
            slot = set_slot_choose(
                album=set_album.album,
                key=request.POST.get("slot", ""),
                image_id=int(image_id) if image_id.isdigit() else 0,
            )
            return f"Slot {slot.key} now shows image {image_id}."

        return self._act(request, object_id, choose)

    def sheet_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        set_album = self.object_or_404(request, object_id, change=False)
        response = HttpResponse(contact_sheet(set_album), content_type="image/png")
        name = f"{set_file_stem(set_album)}-contact-sheet.png"
        if request.GET.get("download"):
            response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    def export_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        set_album = self.object_or_404(request, object_id, change=False)
        return FileResponse(
            set_zip(set_album),
            as_attachment=True,
            filename=f"{set_file_stem(set_album)}.zip",
            content_type="application/zip",
        )

    @admin.display(description="slots", ordering="slots_total")
    def slot_total(self, obj: SetAlbum) -> int:
        return obj.slots_total

    @admin.display(description="size")
    def size(self, obj: SetAlbum) -> str:
        return f"{obj.width}×{obj.height} px"

    @admin.display(description="LoRAs")
    def lora_stack(self, obj: SetAlbum) -> str:
        return ", ".join(f"{e['name']} {e['weight']:g}" for e in obj.loras) or "—"
