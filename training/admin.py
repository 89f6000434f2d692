"""Admin for training: runs and LoRAs here; dataset versions (training.datasets)
and generation jobs (training.generation) registered here too.

A run is started from its add page: choose albums (with their readiness
counts), a base model and the config (defaults and ranges from settings); the
dataset version is built (or the identical one found) and the run queued. Its
change page is the run's report: progress, loss curve, samples, log tail,
LoRA download and manifest, refreshed every few seconds while it is active,
with Start (or resume) and Cancel. LoRAs are imported from a file upload.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import slugify

from albums.models import Album
from imagineer_project.admin_pages import ImagineerAdmin
from imagineer_project.errors import DomainError
from imagineer_project.forms import add_domain_error
from imagineer_project.run_admin import RunAdmin
from training.config import (
    ADVANCED_SECTIONS,
    FIELDS,
    ConfigInvalid,
    config_defaults,
    config_validate,
    field_help,
)
from training.config import SECTIONS as CONFIG_SECTIONS
from training.datasets.admin import (
    DatasetBuildAdmin,
    DatasetBuildForm,
    DatasetExportAdmin,
    DatasetVersionAdmin,
)
from training.datasets.services import DatasetInvalid
from training.estimates import training_estimate, training_estimates
from training.generation.admin import GenerationJobAdmin
from training.maintenance import (
    TrainingRunActive,
    training_run_delete,
    training_run_work_dir_size,
)
from training.ml.config import LORA_TARGET_CHOICES
from training.models import (
    DatasetBuild,
    DatasetExport,
    DatasetVersion,
    GenerationJob,
    Lora,
    SetAlbum,
    SetRun,
    SetTemplate,
    TrainingRun,
)
from training.presets import (
    DEFAULT_PRESET,
    PRESETS,
    PRESETS_BY_KEY,
    preset_config,
    preset_configs,
)
from training.registry import (
    LoraInvalid,
    lora_delete,
    lora_import,
    lora_open,
    lora_update,
)
from training.selectors import RUN_DETAIL_FIELDS, training_runs
from training.services import (
    training_run_create_from_albums,
    training_run_start,
)
from training.sets.admin import SetAlbumAdmin, SetRunAdmin, SetTemplateAdmin
from training.views import run_report

# --- forms ---------------------------------------------------------------------------


def _config_field(name: str, kind: type, choices: tuple[str, ...]) -> forms.Field:
    default = config_defaults()[name]
    options: dict[str, Any] = {"initial": default, "help_text": field_help(name)}
    if name == "reg_album":
        return forms.TypedChoiceField(
            coerce=int,
            choices=_reg_album_choices,
            required=False,
            empty_value=0,
            **options,
        )
    if choices:
        return forms.ChoiceField(choices=[(c, c) for c in choices], **options)
    if kind is bool:
        return forms.BooleanField(required=False, **options)
    if kind is int:
        return forms.IntegerField(**options)
    return forms.FloatField(**options)


def _reg_album_choices() -> list[tuple[int, str]]:
    albums = Album.objects.order_by("name", "id").values_list("pk", "name")
    return [(0, "None"), *albums]


class TrainingRunAddForm(DatasetBuildForm):
    """The dataset build form (albums with readiness, trigger word, NSFW, repeats
    per album), plus the run: base model, start now, a preset, and the config
    fields in their sections (training.config.SECTIONS; the advanced ones
    folded).

    Steps and resolution may go below their minimum, as `manage.py train`
    allows, with a warning (`warnings` after cleaning). A preset fills the
    config fields in the browser (train.js); the server applies it too, to
    every field posted at its default. A resolution at the default follows the
    base model's family (SDXL trains at 1024).
    """

    base_model = forms.CharField(
        max_length=500,
        help_text="A local diffusers folder or a hub id, as the gpu worker's "
        "machine sees it.",
        widget=forms.TextInput(attrs={"size": 60}),
    )
    start = forms.BooleanField(
        required=False,
        initial=True,
        label="Start now",
        help_text="Off: the run waits for its Start button.",
    )
    preset = forms.ChoiceField(
        required=False,  # none: the fields as posted
        choices=[(p.key, p.label) for p in PRESETS],
        initial=DEFAULT_PRESET,
        widget=forms.RadioSelect,
        help_text="Fills the training config below; change any field after.",
    )

    SECTIONS = (
        (
            "Data",
            (
                "albums",
                "trigger_word",
                "no_trigger_word",
                "include_nsfw",
                "album_repeats",
            ),
        ),
        ("Run", ("name", "base_model", "start", "preset")),
    )
    ADVANCED = ADVANCED_SECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["albums"].help_text = (
            "Captioned counts leave out rejected and NSFW images. Several albums "
            "together may be enough when none is alone."
        )
        self.fields["base_model"].initial = settings.TRAINING_BASE_MODEL
        # Built per form: defaults and ranges are read from settings each time.
        for spec in FIELDS:
            self.fields[spec.name] = _config_field(spec.name, spec.kind, spec.choices)
        self.warnings: list[str] = []

    def sections(self) -> list[tuple[str, list[forms.BoundField]]]:
        named = [(title, [self[n] for n in names]) for title, names in self.SECTIONS]
        config = [
            (title, [self[spec.name] for spec in FIELDS if spec.section == title])
            for title in CONFIG_SECTIONS
        ]
        return [*named, *config]

    # Left at the default, these follow the base model (resolution) or the
    # optimizer (Prodigy's learning rates): config_validate fills them.
    FOLLOWING = ("resolution", "learning_rate", "text_encoder_lr")

    def config(self) -> dict[str, Any]:
        """The config as posted, less the FOLLOWING fields left at their default."""
        config = {spec.name: self.cleaned_data.get(spec.name) for spec in FIELDS}
        defaults = config_defaults()
        for name in self.FOLLOWING:
            if config[name] == defaults[name]:
                del config[name]
        return config

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        self._apply_preset(data)
        try:
            _, self.warnings = config_validate(
                self.config(),
                allow_below_minimum=True,
                base_model=data.get("base_model", ""),
            )
        except ConfigInvalid as exc:
            for name, message in exc.errors.items():
                if name not in self.errors:
                    self.add_error(name, message)
        return data

    def _apply_preset(self, data: dict[str, Any]) -> None:
        """Fields left at their default take the chosen preset's value."""
        if data.get("preset") not in PRESETS_BY_KEY:
            return
        defaults, preset = config_defaults(), preset_config(data["preset"])
        for spec in FIELDS:
            if spec.name in data and data[spec.name] == defaults[spec.name]:
                data[spec.name] = preset[spec.name]


class LoraImportForm(forms.Form):
    file = forms.FileField(help_text="A kohya-format .safetensors LoRA.")
    name = forms.CharField(max_length=200)
    trigger_words = forms.CharField(
        required=False,
        help_text="Comma-separated. Blank: the file's own trigger word, if any.",
    )
    default_weight = forms.FloatField(initial=0.8, min_value=-4, max_value=4)
    base_model = forms.CharField(
        max_length=500, required=False, help_text="Blank: what the file says."
    )


def _words(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


class LoraChangeForm(forms.ModelForm):
    trigger_words = forms.CharField(required=False, help_text="Comma-separated.")

    class Meta:
        model = Lora
        fields = ("name", "trigger_words", "default_weight")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["trigger_words"] = ", ".join(self.instance.trigger_words or [])

    def clean_trigger_words(self) -> list[str]:
        return _words(self.cleaned_data["trigger_words"])


# --- training runs -------------------------------------------------------------------


@admin.register(TrainingRun)
class TrainingRunAdmin(RunAdmin):
    progress_unit = " steps"
    cancel_note = "Cancel requested; the run stops within one training step."
    list_display = (
        "id",
        "name",
        "dataset_link",
        "status",
        "progress",
        "loss_shown",
        "lora_link",
        "created",
        "finished_at",
    )
    list_display_links = ("id", "name")
    list_filter = ("status", "base_model")
    search_fields = ("name", "base_model", "dataset__name", "dataset__manifest_sha256")
    list_select_related = ("dataset",)
    raw_id_fields = ("dataset", "created_by", "sample_album")
    fieldsets = (
        (None, {"fields": ("name", "dataset_link", "base_model", "report")}),
        ("Config", {"fields": ("config_shown",), "classes": ("collapse",)}),
        (
            "Training manifest",
            {"fields": ("manifest_sha256", "manifest_shown"), "classes": ("collapse",)},
        ),
        (
            "History",
            {
                "fields": (
                    "created_by",
                    "created",
                    "enqueued_at",
                    "started_at",
                    "heartbeat_at",
                    "finished_at",
                    "attempts",
                    "cancel_requested",
                )
            },
        ),
    )
    change_form_template = "admin/training/trainingrun/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Annotated with each run's LoRA id: the list links it without a query.
        # The bulky JSON columns load only on the change page that shows them.
        return training_runs().defer(*RUN_DETAIL_FIELDS)

    def has_delete_permission(
        self, request: HttpRequest, obj: TrainingRun | None = None
    ) -> bool:
        return bool(obj is None or not obj.is_active) and super().has_delete_permission(
            request, obj
        )

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """Django's list of what a delete takes, plus each run's work dir (both
        the delete page and "delete selected" show it). An active run among
        the selection blocks the delete, as a protected object would."""
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(
            objs, request
        )
        dirs = 0
        for run in objs:
            if run.is_active:
                protected.append(f"{run} — cancel it first")
                if super().has_delete_permission(request):
                    # Refused for being active, not for a missing permission.
                    perms_needed.discard(self.opts.verbose_name)
                continue
            size = training_run_work_dir_size(run=run)
            if size:
                dirs += 1
                to_delete.append(
                    f"The work dir of training run #{run.pk} ({filesizeformat(size)})"
                )
        if dirs:
            model_count["work dirs"] = dirs
        return to_delete, model_count, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: TrainingRun) -> None:
        training_run_delete(run=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for run in queryset:
            try:
                training_run_delete(run=run)
            except TrainingRunActive as exc:
                self.message_user(request, exc.message, messages.WARNING)

    def get_urls(self) -> list[Any]:
        start = self.object_url("start", self.start_view, post_only=True)
        estimate = path(
            "estimate/",
            self.admin_site.admin_view(self.estimate_view),
            name="training_trainingrun_estimate",
        )
        return [start, estimate, *super().get_urls()]

    # --- pages ------------------------------------------------------------------------

    def add_page(self, request: HttpRequest) -> HttpResponse:
        # ?album=<pk> (repeatable): the album pages' "Train on" link.
        albums = [pk for pk in request.GET.getlist("album") if pk.isdigit()]
        form = self.posted(request, TrainingRunAddForm, albums=albums)
        base_model = form["base_model"].value() or settings.TRAINING_BASE_MODEL
        estimates = training_estimates(base_model=base_model, configs=preset_configs())
        return self.form_view(
            request,
            form,
            save=lambda form: self._create(request, form),
            title="Start a training run",
            template="admin/training/trainingrun/add_form.html",
            presets=[
                {
                    "preset": p,
                    "config": preset_config(p.key),
                    "estimate": estimates[p.key],
                }
                for p in PRESETS
            ],
            preset_configs=preset_configs(),
            estimate_url=reverse("admin:training_trainingrun_estimate"),
        )

    def estimate_view(self, request: HttpRequest) -> JsonResponse:
        """GET ?base_model=&steps=&resolution=&batch_size=&gradient_accumulation=
        &lora_targets=&train_text_encoder=&gradient_checkpointing=: the estimate
        for what the form holds now (train.js asks on change)."""
        self.require_add(request)
        config = config_defaults()
        for name in ("steps", "resolution", "batch_size", "gradient_accumulation"):
            value = request.GET.get(name, "")
            if value.isdigit() and int(value) > 0:
                config[name] = int(value)
        if request.GET.get("lora_targets") in LORA_TARGET_CHOICES:
            config["lora_targets"] = request.GET["lora_targets"]
        for name in ("train_text_encoder", "gradient_checkpointing"):
            if name in request.GET:
                config[name] = request.GET[name] in ("on", "true", "1")
        base_model = request.GET.get("base_model") or settings.TRAINING_BASE_MODEL
        estimate = training_estimate(base_model=base_model, config=config)
        return JsonResponse({"seconds": estimate.seconds, "text": estimate.text})

    def _create(
        self, request: HttpRequest, form: TrainingRunAddForm
    ) -> HttpResponse | None:
        data = form.cleaned_data
        try:
            run = training_run_create_from_albums(
                albums=list(data["albums"]),
                trigger_word=form.trigger_word_choice(),
                include_nsfw=data["include_nsfw"],
                base_model=data["base_model"],
                config=form.config(),
                repeats=form.repeats(),
                name=data["name"],
                created_by=request.user,
                enqueue=data["start"],
                allow_below_minimum=True,
                rate_limited=True,
            )
        except DatasetInvalid as exc:
            form.add_error("albums", exc.message)
            return None
        except DomainError as exc:
            add_domain_error(form, exc)
            return None
        for warning in form.warnings:  # below the usual minimum: allowed, as the CLI
            self.message_user(request, f"Warning: {warning}.", messages.WARNING)
        queued = "queued for the gpu worker" if data["start"] else "ready to start"
        self.message_user(
            request,
            f"Training run #{run.pk} is {queued}; this page follows it.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self.run_url(run))

    def change_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        report = run_report(obj) if obj is not None else {}
        return {
            **super().change_context(request, obj),
            "can_start": report.get("can_start", False),
            "lora": report.get("lora"),
            "refresh_seconds": report.get("refresh_seconds"),
        }

    def start_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self.object_or_404(request, object_id)
        try:
            training_run_start(run=run, user=request.user, rate_limited=True)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.WARNING)
        else:
            self.message_user(request, "Queued for the gpu worker.", messages.SUCCESS)
        return HttpResponseRedirect(self.run_url(run))

    # --- columns and fields -----------------------------------------------------------

    @admin.display(description="dataset", ordering="dataset__name")
    def dataset_link(self, obj: TrainingRun) -> str:
        return format_html(
            '<a href="{}">{}</a> <code>{}</code>',
            reverse("admin:training_datasetversion_change", args=[obj.dataset_id]),
            obj.dataset.name,
            obj.dataset.manifest_sha256[:12],
        )

    @admin.display(description="loss", ordering="loss")
    def loss_shown(self, obj: TrainingRun) -> str:
        return "–" if obj.loss is None else f"{obj.loss:.4f}"

    @admin.display(description="LoRA")
    def lora_link(self, obj: TrainingRun) -> str:
        lora_id = getattr(obj, "lora_id", None)
        if lora_id is None:
            return "–"
        url = reverse("admin:training_lora_change", args=[lora_id])
        return format_html('<a href="{}">#{}</a>', url, lora_id)

    @admin.display(description="report")
    def report(self, obj: TrainingRun) -> str:
        return render_to_string("training/_run_report.html", run_report(obj))

    @admin.display(description="config")
    def config_shown(self, obj: TrainingRun) -> str:
        return format_html(
            '<pre class="training-json">{}</pre>',
            json.dumps(obj.config, indent=2, sort_keys=True),
        )

    @admin.display(description="manifest")
    def manifest_shown(self, obj: TrainingRun) -> str:
        if not obj.manifest:
            return "Written when training starts."
        return format_html(
            '<pre class="training-json">{}</pre>',
            json.dumps(obj.manifest, indent=2, sort_keys=True),
        )


# --- LoRAs ---------------------------------------------------------------------------


class LoraOriginFilter(admin.SimpleListFilter):
    title = "origin"
    parameter_name = "origin"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("trained", "Trained here"), ("imported", "Imported")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("trained", "imported"):
            return queryset.filter(source_run__isnull=self.value() == "imported")
        return queryset


@admin.register(Lora)
class LoraAdmin(ImagineerAdmin):
    form = LoraChangeForm
    list_display = (
        "name",
        "trigger_words_shown",
        "rank",
        "alpha",
        "family",
        "size_shown",
        "base_model",
        "source_run_link",
        "created",
        "download_link",
    )
    list_filter = (LoraOriginFilter, "family", "rank", "base_model")
    search_fields = ("name", "trigger_words", "base_model", "sha256")
    # The list shows only source_run_id: joining the run would load its JSON.
    list_select_related = ()
    raw_id_fields = ("source_run", "sample_album", "created_by")
    fieldsets = (
        (None, {"fields": ("name", "trigger_words", "default_weight")}),
        (
            "File",
            {
                "fields": (
                    "download_link",
                    "size_shown",
                    "sha256",
                    "rank",
                    "alpha",
                    "family",
                    "base_model",
                    "source_run_link",
                    "source_step",
                    "samples",
                    "created_by",
                    "created",
                )
            },
        ),
        ("Metadata", {"fields": ("metadata_shown",), "classes": ("collapse",)}),
    )
    readonly_fields = (
        "download_link",
        "size_shown",
        "sha256",
        "rank",
        "alpha",
        "family",
        "base_model",
        "source_run_link",
        "source_step",
        "samples",
        "created_by",
        "created",
        "metadata_shown",
    )
    change_form_template = "admin/training/lora/change_form.html"

    def get_urls(self) -> list[Any]:
        return [self.object_url("download", self.download_view), *super().get_urls()]

    def add_page(self, request: HttpRequest) -> HttpResponse:

        def save(form: LoraImportForm) -> HttpResponse | None:
            data = form.cleaned_data
            try:
                lora = lora_import(
                    file=data["file"],
                    name=data["name"],
                    trigger_words=_words(data["trigger_words"]),
                    default_weight=data["default_weight"],
                    base_model=data["base_model"],
                    created_by=request.user,
                )
            except LoraInvalid as exc:
                form.add_error(exc.field, exc.message)
                return None
            self.message_user(
                request, f"Imported the LoRA {lora.name!r}.", messages.SUCCESS
            )
            return HttpResponseRedirect(
                reverse("admin:training_lora_change", args=[lora.pk])
            )

        return self.form_view(
            request,
            self.posted(request, LoraImportForm),
            save=save,
            title="Import a LoRA",
            template="admin/training/lora/add_form.html",
        )

    def save_model(
        self, request: HttpRequest, obj: Lora, form: Any, change: bool
    ) -> None:
        data = form.cleaned_data
        lora_update(
            lora=obj,
            name=data["name"],
            trigger_words=data["trigger_words"],
            default_weight=data["default_weight"],
        )

    def delete_model(self, request: HttpRequest, obj: Lora) -> None:
        lora_delete(lora=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for lora in queryset:
            lora_delete(lora=lora)

    def download_view(self, request: HttpRequest, object_id: str) -> FileResponse:
        lora = self.object_or_404(request, object_id, change=False)
        return FileResponse(
            lora_open(lora),
            as_attachment=True,
            filename=f"{slugify(lora.name) or 'lora'}.safetensors",
            content_type="application/octet-stream",
        )

    # --- columns and fields -----------------------------------------------------------

    @admin.display(description="trigger words")
    def trigger_words_shown(self, obj: Lora) -> str:
        return ", ".join(obj.trigger_words)

    @admin.display(description="size", ordering="size")
    def size_shown(self, obj: Lora) -> str:
        return filesizeformat(obj.size)

    @admin.display(description="trained by", ordering="source_run")
    def source_run_link(self, obj: Lora) -> str:
        if obj.source_run_id is None:
            return "Imported"
        return format_html(
            '<a href="{}">run #{}</a>',
            reverse("admin:training_trainingrun_change", args=[obj.source_run_id]),
            obj.source_run_id,
        )

    @admin.display(description="download")
    def download_link(self, obj: Lora) -> str:
        url = reverse("admin:training_lora_download", args=[obj.pk])
        return format_html('<a href="{}">.safetensors</a>', url)

    @admin.display(description="samples")
    def samples(self, obj: Lora) -> str:
        if obj.sample_album_id is None:
            return "–"
        ids = obj.sample_album.memberships.order_by("position", "id").values_list(
            "image_id", flat=True
        )
        return format_html_join(
            " ",
            '<a href="{}"><img class="imagineer-thumb" src="/api/images/{}/thumbnail'
            '?size=256" width="96" height="96" alt="" loading="lazy"></a>',
            ((reverse("admin:albums_image_change", args=[pk]), pk) for pk in ids),
        )

    @admin.display(description="metadata")
    def metadata_shown(self, obj: Lora) -> str:
        return format_html(
            '<pre class="training-json">{}</pre>',
            json.dumps(obj.metadata, indent=2, sort_keys=True),
        )


# The datasets and generation packages define their admins; the app registers
# them here, beside its own, so every registration of the app is in one place.
admin.site.register(DatasetVersion, DatasetVersionAdmin)
admin.site.register(DatasetBuild, DatasetBuildAdmin)
admin.site.register(DatasetExport, DatasetExportAdmin)
admin.site.register(GenerationJob, GenerationJobAdmin)
admin.site.register(SetTemplate, SetTemplateAdmin)
admin.site.register(SetRun, SetRunAdmin)
admin.site.register(SetAlbum, SetAlbumAdmin)
