"""Admin for labels and labeling jobs, and what labeling adds to the image and
album admins: the caption-first image page with its labels inline, label text
in the image search, album coverage, "Label with Claude…" and "Find and replace
in captions…". Albums sits below labeling and cannot import it, so this module
subclasses albums' ImageAdmin and AlbumAdmin and registers the subclasses in
their place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from albums.admin import AlbumAdmin, ImageAdmin
from albums.models import Album, Image
from imagineer_project.admin_actions import action_step
from imagineer_project.admin_pages import ImagineerAdmin
from imagineer_project.errors import DomainError
from imagineer_project.run_admin import RunAdmin
from labeling.analytics import render_album_coverage
from labeling.models import Label, LabelingItem, LabelingJob
from labeling.selectors import TRAINING_CAPTION_RULE, training_caption
from labeling.services import (
    captions_find_replace,
    image_caption_set,
    image_tags_set,
    labeling_job_create,
    labels_set_review,
)

# --- labels -----------------------------------------------------------------------


if TYPE_CHECKING:
    from django.contrib.auth.models import User


class LabelAlbumFilter(admin.SimpleListFilter):
    title = "album"
    parameter_name = "album"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        albums = Album.objects.order_by("name").values_list("pk", "name")
        return [(str(pk), name) for pk, name in albums]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() and self.value().isdigit():
            return queryset.filter(image__memberships__album_id=int(self.value()))
        return queryset


@admin.register(Label)
class LabelAdmin(ImagineerAdmin):
    list_display = (
        "thumbnail",
        "image",
        "kind",
        "excerpt",
        "source",
        "review",
        "model_name",
        "confidence",
        "author",
        "created",
    )
    list_display_links = ("excerpt",)
    list_filter = ("kind", "source", "review", "model_name", LabelAlbumFilter)
    search_fields = ("text",)
    list_select_related = ("image", "author")
    raw_id_fields = ("image", "author")
    readonly_fields = ("created", "updated")
    actions = ("approve", "reject", "mark_unreviewed")
    fields = (
        "image",
        "kind",
        "text",
        "source",
        "review",
        "model_name",
        "prompt_version",
        "confidence",
        "author",
        "created",
        "updated",
    )

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

    def _review(self, request: HttpRequest, queryset: QuerySet, review: str) -> None:
        count = labels_set_review(
            label_ids=queryset.values_list("pk", flat=True), review=review
        )
        self.message_user(request, f"{count} label(s) marked {review}.")

    @admin.action(description="Approve (these captions train)", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._review(request, queryset, Label.Review.APPROVED)

    @admin.action(description="Reject (never train on these)", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._review(request, queryset, Label.Review.REJECTED)

    @admin.action(description="Mark unreviewed", permissions=["change"])
    def mark_unreviewed(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._review(request, queryset, Label.Review.UNREVIEWED)


# --- labeling jobs ----------------------------------------------------------------


class FailureInline(admin.TabularInline):
    model = LabelingItem
    verbose_name = "failed image"
    verbose_name_plural = "failed images"
    fields = ("image_link", "reason", "created")
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(outcome="failed")

    @admin.display(description="image")
    def image_link(self, obj: LabelingItem) -> str:
        return format_html(
            '<a href="{}"><img src="/api/images/{}/thumbnail" width="48" height="48" '
            'class="imagineer-thumb" loading="lazy" alt=""> #{}</a>',
            reverse("admin:albums_image_change", args=[obj.image_id]),
            obj.image_id,
            obj.image_id,
        )


@admin.register(LabelingJob)
class LabelingJobAdmin(RunAdmin):
    progress_unit = " images"
    cancel_label = "Cancel job"
    cancel_note = "Cancel requested; requests already sent finish and are kept."
    list_display = (
        "id",
        "target",
        "style",
        "status",
        "progress",
        "labeled_count",
        "skipped_count",
        "failed_count",
        "tokens",
        "cost",
        "created",
    )
    list_filter = ("status", "style", "model_name", "budget_exhausted")
    search_fields = ("album__name", "message", "error")
    list_select_related = ("album",)
    raw_id_fields = ("album", "created_by")
    inlines = (FailureInline,)
    fieldsets = (
        (None, {"fields": ("target", "status", "progress_bar", "message", "error")}),
        (
            "Results",
            {
                "fields": (
                    "labeled_count",
                    "skipped_count",
                    "failed_count",
                    "tokens",
                    "cost",
                    "budget_usd",
                    "budget_exhausted",
                    "use_batch",
                )
            },
        ),
        (
            "Request",
            {
                "fields": (
                    "style",
                    "force",
                    "limit",
                    "model_name",
                    "prompt_version",
                    "created_by",
                    "created",
                    "started_at",
                    "finished_at",
                    "attempts",
                )
            },
        ),
    )
    change_form_template = "admin/labeling/labelingjob/change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs start from the image and album actions, the API or CLI

    @admin.display(description="what")
    def target(self, obj: LabelingJob) -> str:
        if obj.album_id:
            return format_html(
                '<a href="{}">{}</a>',
                reverse("admin:albums_album_change", args=[obj.album_id]),
                obj.album.name,
            )
        count = len(obj.image_ids)
        return f"{count} selected image{'s' if count != 1 else ''}"

    @admin.display(description="tokens in / out")
    def tokens(self, obj: LabelingJob) -> str:
        return f"{obj.input_tokens:,} / {obj.output_tokens:,}"

    @admin.display(description="cost (USD, est.)", ordering="cost_usd")
    def cost(self, obj: LabelingJob) -> str:
        return f"${obj.cost_usd:.4f}"


# --- actions for the image and album admins -----------------------------------------


class LabelWithClaudeForm(forms.Form):
    style = forms.ChoiceField(choices=LabelingJob.Style.choices)
    force = forms.BooleanField(
        required=False,
        label="Re-label images already labeled",
        help_text="Replaces Claude's own earlier labels; a person's never change.",
    )
    budget = forms.DecimalField(
        required=False,
        min_value=0.0001,
        decimal_places=4,
        label="Budget (USD)",
        help_text="Stop cleanly once the estimated cost reaches this.",
    )
    batch = forms.BooleanField(
        required=False,
        label="Use the Message Batches API",
        help_text="Half the price; results within 24 hours. Not with a budget.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("batch") and data.get("budget") is not None:
            raise forms.ValidationError(
                "A budget needs direct requests (a batch is priced only once it "
                "has ended): choose one."
            )
        return data


class FindReplaceForm(forms.Form):
    find = forms.CharField(max_length=500, strip=False)
    replace = forms.CharField(max_length=500, required=False, strip=False)
    case_sensitive = forms.BooleanField(required=False)


def _start_jobs(
    modeladmin: admin.ModelAdmin, request: HttpRequest, targets: list[dict[str, Any]]
) -> HttpResponse | None:
    try:
        jobs = [
            labeling_job_create(created_by=request.user, rate_limited=True, **t)
            for t in targets
        ]
    except DomainError as exc:
        modeladmin.message_user(request, exc.message, messages.ERROR)
        return None
    links = format_html_join(
        ", ",
        '<a href="{}">#{}</a>',
        ((job.get_absolute_url(), job.pk) for job in jobs),
    )
    modeladmin.message_user(
        request,
        format_html("Started {} labeling job(s): {}.", len(jobs), links),
        messages.SUCCESS,
    )
    if len(jobs) == 1:
        return HttpResponseRedirect(jobs[0].get_absolute_url())
    return None


def label_images_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    """Image action: one job for the whole selection."""

    def apply(data: dict[str, Any]) -> HttpResponse | None:
        target = {
            "images": list(queryset.order_by("pk")),
            "style": data["style"],
            "force": data["force"],
            "budget_usd": data["budget"],
            "use_batch": data["batch"],
        }
        return _start_jobs(modeladmin, request, [target])

    return action_step(
        modeladmin,
        request,
        queryset,
        action="label_with_claude",
        title="Label with Claude",
        form=LabelWithClaudeForm,
        apply=apply,
    )


def label_albums_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    """Album action: one job per album."""

    def apply(data: dict[str, Any]) -> HttpResponse | None:
        targets = [
            {
                "album": album,
                "style": data["style"],
                "force": data["force"],
                "budget_usd": data["budget"],
                "use_batch": data["batch"],
            }
            for album in queryset.order_by("pk")
        ]
        return _start_jobs(modeladmin, request, targets)

    return action_step(
        modeladmin,
        request,
        queryset,
        action="label_with_claude",
        title="Label with Claude",
        form=LabelWithClaudeForm,
        apply=apply,
        note="Each album gets its own job (and its own budget).",
    )


def find_replace_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    """Image action: find/replace in the selected images' captions."""

    def apply(data: dict[str, Any]) -> None:
        changed = captions_find_replace(
            image_ids=queryset.values_list("pk", flat=True),
            find=data["find"],
            replace=data["replace"],
            user=request.user,
            case_sensitive=data["case_sensitive"],
        )
        modeladmin.message_user(
            request, f"Changed {changed} caption(s).", messages.SUCCESS
        )

    return action_step(
        modeladmin,
        request,
        queryset,
        action="find_replace_captions",
        title="Find and replace in captions",
        form=FindReplaceForm,
        apply=apply,
        note="Edited captions become yours: re-labeling with Claude keeps them.",
    )


# --- the image page's caption-first editor --------------------------------------


class ImageLabelsForm(forms.ModelForm):
    """The image change form with the caption first and the tags as a list.

    The caption field holds the caption the image trains with; editing it writes
    a person's caption (labeling.services.image_caption_set). Tags are one per
    line; removing a line removes the tag.
    """

    caption = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="The caption this image trains with. Your edit becomes the "
        "image's approved caption.",
    )
    caption_review = forms.ChoiceField(
        choices=Label.Review.choices, required=False, label="Caption review"
    )
    tags = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 40}),
        help_text="One tag per line; phrases stay whole.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        image = self.instance
        if image.pk is None:
            return
        from labeling.selectors import training_caption

        choice = training_caption(image)
        review = (
            Label.objects.filter(pk=choice.label_id)
            .values_list("review", flat=True)
            .first()
        )
        tags = image.labels.filter(kind=Label.Kind.TAG).order_by("id")
        self.initial.update(
            caption=choice.text,
            caption_review=review or Label.Review.UNREVIEWED,
            tags="\n".join(tags.values_list("text", flat=True)),
        )

    def save_labels(self, user: User) -> None:
        image, data = self.instance, self.cleaned_data
        if {"caption", "caption_review"} & set(self.changed_data):
            review = (
                data["caption_review"]
                if "caption_review" in self.changed_data
                else None
            )
            image_caption_set(
                image=image, text=data["caption"], user=user, review=review
            )
        if "tags" in self.changed_data:
            image_tags_set(image=image, tags=data["tags"].splitlines(), user=user)


# --- the image and album admins, with labels ------------------------------------


class LabelInlineForm(forms.ModelForm):
    class Meta:
        model = Label
        fields = ("kind", "text", "source", "review", "model_name", "confidence")
        # Narrow widgets, so the inline table fits beside the admin's sidebar.
        widgets = {
            "text": forms.Textarea(attrs={"rows": 2, "cols": 44}),
            "model_name": forms.TextInput(attrs={"size": 14}),
            "confidence": forms.NumberInput(attrs={"style": "width: 5em"}),
        }


class LabelInline(admin.TabularInline):
    model = Label
    form = LabelInlineForm
    fields = ("kind", "text", "source", "review", "model_name", "confidence", "author")
    readonly_fields = ("author",)
    extra = 1

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("author")


class LabeledImageAdmin(ImageAdmin):
    """The image page leads with the caption it trains with and its tags, and
    lists every label inline; the changelist finds images by label text."""

    search_fields = (*ImageAdmin.search_fields, "labels__text")
    search_help_text = "Filename, source URL or label text."
    actions = (*ImageAdmin.actions, "label_with_claude", "find_replace_captions")
    inlines = (*ImageAdmin.inlines, LabelInline)
    form = ImageLabelsForm
    fieldsets = (
        ImageAdmin.fieldsets[0],
        (
            "Caption and tags",
            {"fields": ("trains_with", "caption", "caption_review", "tags")},
        ),
        *ImageAdmin.fieldsets[1:],
    )
    editable_fields = (*ImageAdmin.editable_fields, "caption", "caption_review", "tags")

    @admin.display(description="trains with")
    def trains_with(self, obj: Image) -> str:
        choice = training_caption(obj)
        return format_html(
            '{} <span class="help" title="{}">({})</span>',
            choice.text or "No caption yet",
            TRAINING_CAPTION_RULE,
            choice.reason,
        )

    def save_model(
        self, request: HttpRequest, obj: Image, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        form.save_labels(request.user)

    def save_formset(
        self, request: HttpRequest, form: Any, formset: Any, change: bool
    ) -> None:
        # Labels typed here are a person's: record who wrote the new ones.
        for label in formset.save(commit=False):
            if label.pk is None and label.author_id is None:
                label.author = request.user
            new_caption = label.pk is None and label.kind == Label.Kind.CAPTION
            if new_caption and label.source == Label.Source.HUMAN:
                # Writing a caption is reviewing it (labeling.services.label_create).
                label.review = Label.Review.APPROVED
            label.save()
        for label in formset.deleted_objects:
            label.delete()

    @admin.action(description="Label with Claude…", permissions=["change"])
    def label_with_claude(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        return label_images_action(self, request, queryset)

    @admin.action(description="Find and replace in captions…", permissions=["change"])
    def find_replace_captions(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        return find_replace_action(self, request, queryset)


class LabelingAlbumAdmin(AlbumAdmin):
    """The album page shows labeling coverage and top tags; albums can be
    labeled with Claude from the list."""

    fieldsets = (
        *AlbumAdmin.fieldsets[:-1],
        ("Labeling", {"fields": ("labeling_coverage",)}),
        AlbumAdmin.fieldsets[-1],
    )
    readonly_fields = (*AlbumAdmin.readonly_fields, "labeling_coverage")
    actions = (*AlbumAdmin.actions, "label_with_claude")

    @admin.display(description="coverage and top tags")
    def labeling_coverage(self, obj: Album) -> str:
        return render_album_coverage(obj) if obj.pk else "—"

    @admin.action(description="Label with Claude…", permissions=["change"])
    def label_with_claude(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        return label_albums_action(self, request, queryset)


for model, model_admin in ((Image, LabeledImageAdmin), (Album, LabelingAlbumAdmin)):
    admin.site.unregister(model)
    admin.site.register(model, model_admin)
