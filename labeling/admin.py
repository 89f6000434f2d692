"""Admin for labels and labeling jobs, and what labeling adds to the image and
album admins: the caption-first image page with its labels inline, label text
in the image search, album coverage, "Label with Claude…" and "Find and replace
in captions…". Albums sits below labeling and cannot import it, so this module
subclasses albums' ImageAdmin and AlbumAdmin and registers the subclasses in
their place."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import truncatechars
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from albums.admin import AlbumAdmin, ImageAdmin, thumbnail_tag
from albums.models import Album, Image, thumbnail_url
from imagineer_project.admin_actions import action_step
from imagineer_project.admin_pages import ImagineerAdmin
from imagineer_project.errors import DomainError
from imagineer_project.run_admin import RunAdmin
from labeling import claude
from labeling.analytics import render_album_coverage
from labeling.estimates import labeling_estimates
from labeling.models import Label, LabelingItem, LabelingJob
from labeling.review import views as review_views
from labeling.selectors import (
    TRAINING_CAPTION_RULE,
    training_caption,
    training_captions,
)
from labeling.services import (
    captions_find_replace,
    image_caption_set,
    image_tags_set,
    images_review_set,
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
        # The image row comes with the label (list_select_related): no storage
        # call, no extra query, and the thumbnail keeps the image's shape.
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:albums_image_change", args=[obj.image_id]),
            thumbnail_tag(
                obj.image_id, px=48, width=obj.image.width, height=obj.image.height
            ),
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
    results_shown = 100  # the newest; the label list has the rest

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs start from the image and album actions, the API or CLI

    def change_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        return {**super().change_context(request, obj), **self.results(obj)}

    def results(self, job: LabelingJob) -> dict[str, Any]:
        """What the job wrote, newest first: each image's caption (or
        description), tags and rating from Claude, as they stand now. Two
        queries, however many images."""
        image_ids = list(
            job.items.filter(outcome=LabelingItem.Outcome.LABELED)
            .order_by("-id")
            .values_list("image_id", flat=True)[: self.results_shown]
        )
        rows = {pk: {"caption": "", "tags": [], "rating": ""} for pk in image_ids}
        labels = Label.objects.filter(
            image_id__in=image_ids,
            source=Label.Source.CLAUDE,
            prompt_version=job.prompt_version,
            kind__in=(job.label_kind, Label.Kind.TAG, Label.Kind.NSFW),
        ).values_list("image_id", "kind", "text")
        for image_id, kind, text in labels.order_by("id"):
            row = rows[image_id]
            if kind == Label.Kind.TAG:
                row["tags"].append(text)
            else:
                row["caption" if kind == job.label_kind else "rating"] = text
        query = {"source__exact": "claude", "model_name": job.model_name}
        if job.album_id:
            query["album"] = job.album_id
        return {
            "results": [
                {
                    **row,
                    "image_id": pk,
                    "thumbnail_url": thumbnail_url(pk),
                    "url": reverse("admin:albums_image_change", args=[pk]),
                    "nsfw": row["rating"] in claude.NSFW_RATINGS
                    and claude.rating_is_nsfw(row["rating"]),
                }
                for pk, row in rows.items()
            ],
            "results_more": job.labeled_count > len(image_ids),
            "results_url": reverse("admin:labeling_label_changelist")
            + "?"
            + urlencode(query),
        }

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

    class Media:
        # Shows the cost estimate that matches the style and re-label choices.
        js = ("imagineer/label_estimate.js",)

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


NOT_CONFIGURED_HELP = " See docs/labeling.md, “Set up”."


def not_configured_message() -> str:
    """Why labeling cannot start here (no API key), or "" when it can."""
    try:
        claude.require_configured()
    except claude.LabelingNotConfigured as exc:
        return exc.message + NOT_CONFIGURED_HELP
    return ""


def _refused_without_key(modeladmin: admin.ModelAdmin, request: HttpRequest) -> bool:
    """Say at once, before any form, that labeling needs an API key."""
    message = not_configured_message()
    if message:
        modeladmin.message_user(request, message, messages.ERROR)
    return bool(message)


def estimate_note(images: QuerySet[Image], note: str = "") -> SafeString:
    """The cost estimate for each choice of the labeling form (the script in
    LabelWithClaudeForm.Media shows the one that matches), and `note`."""
    return render_to_string(
        "admin/labeling/_estimate.html",
        {
            "estimates": labeling_estimates(images),
            "discount": settings.LABELING_BATCH_DISCOUNT,
            "note": note,
        },
    )


def _job_options(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "style": data["style"],
        "force": data["force"],
        "budget_usd": data["budget"],
        "use_batch": data["batch"],
    }


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
    if _refused_without_key(modeladmin, request):
        return None

    def apply(data: dict[str, Any]) -> HttpResponse | None:
        target = {"images": list(queryset.order_by("pk")), **_job_options(data)}
        return _start_jobs(modeladmin, request, [target])

    return action_step(
        modeladmin,
        request,
        queryset,
        action="label_with_claude",
        title="Label with Claude",
        form=LabelWithClaudeForm,
        apply=apply,
        note=estimate_note(queryset),
    )


def label_albums_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    """Album action: one job per album."""
    if _refused_without_key(modeladmin, request):
        return None

    def apply(data: dict[str, Any]) -> HttpResponse | None:
        targets = [
            {"album": album, **_job_options(data)} for album in queryset.order_by("pk")
        ]
        return _start_jobs(modeladmin, request, targets)

    images = Image.objects.filter(
        memberships__album__in=queryset.values("pk")
    ).distinct()
    return action_step(
        modeladmin,
        request,
        queryset,
        action="label_with_claude",
        title="Label with Claude",
        form=LabelWithClaudeForm,
        apply=apply,
        note=estimate_note(images, "Each album gets its own job (and its own budget)."),
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
    line; removing a line removes the tag. The one Review field is the image's
    review_status, saved through labeling.services.images_review_set (approving
    approves the caption shown too) by LabeledImageAdmin.save_model.
    """

    caption = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="The caption this image trains with. Your edit becomes the "
        "image's approved caption.",
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
        tags = image.labels.filter(kind=Label.Kind.TAG).order_by("id")
        self.initial.update(
            caption=training_caption(image).text,
            tags="\n".join(tags.values_list("text", flat=True)),
        )

    def save_labels(self, user: User) -> None:
        image, data = self.instance, self.cleaned_data
        if "caption" in self.changed_data:
            image_caption_set(image=image, text=data["caption"], user=user)
        if "tags" in self.changed_data:
            image_tags_set(image=image, tags=data["tags"].splitlines(), user=user)


# --- the image and album admins, with labels ------------------------------------


class LabelInlineForm(forms.ModelForm):
    class Meta:
        model = Label
        fields = ("kind", "text", "source", "review")
        # One line per label (the box grows as it is typed in), so an image's
        # labels read as a compact table that fits beside the admin's sidebar.
        widgets = {"text": forms.Textarea(attrs={"rows": 1, "cols": 40})}


class LabelInline(admin.TabularInline):
    model = Label
    form = LabelInlineForm
    fields = ("kind", "text", "source", "review", "made_by")
    readonly_fields = ("made_by",)
    extra = 0  # "Add another label" adds a row when one is wanted

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("author")

    @admin.display(description="by")
    def made_by(self, obj: Label) -> str:
        """Who or what wrote the label: a person, or the model and its
        confidence."""
        if obj.author_id:
            return str(obj.author)
        if obj.model_name:
            confidence = "" if obj.confidence is None else f" ({obj.confidence:.2f})"
            return f"{obj.model_name}{confidence}"
        return "—"


class CaptionedChangeList(ChangeList):
    """The image changelist, with each row's training caption read for the
    whole page at once (labeling.selectors.training_captions: no query per row)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)  # evaluated once; the template reuses it
        captions = training_captions([row.pk for row in rows])
        for row in rows:
            row.training_caption = captions[row.pk].text


class LabeledImageAdmin(ImageAdmin):
    """The image page leads with the caption it trains with, the one Review
    state and the tags, and lists every label inline; the changelist shows each
    image's training caption and finds images by label text; the review grid
    (labeling.review) works through the same filters."""

    list_display = (
        *ImageAdmin.list_display[:2],
        "caption_text",
        *ImageAdmin.list_display[2:],
    )
    search_fields = (*ImageAdmin.search_fields, "labels__text")
    search_help_text = "Filename, source URL or label text."
    actions = (*ImageAdmin.actions, "label_with_claude", "find_replace_captions")
    inlines = (*ImageAdmin.inlines, LabelInline)
    form = ImageLabelsForm
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "caption",
                    "trains_with",
                    "review_status",
                    "is_nsfw",
                    "visibility",
                    "tags",
                )
            },
        ),
        *ImageAdmin.fieldsets[1:],
    )
    editable_fields = (*ImageAdmin.editable_fields, "caption", "tags")

    def get_urls(self) -> list[Any]:
        grid = partial(review_views.review_grid, model_admin=self)
        act = partial(review_views.review_act, model_admin=self)
        site = self.admin_site
        return [
            path("review/", site.admin_view(grid), name="albums_image_review"),
            path("review/act/", site.admin_view(act), name="albums_image_review_act"),
            *super().get_urls(),
        ]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return CaptionedChangeList

    @admin.display(description="caption")
    def caption_text(self, obj: Image) -> str:
        text = getattr(obj, "training_caption", "")
        return truncatechars(text, 140) if text else "—"

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
        if "review_status" in form.changed_data:
            # After the caption: approving approves the caption just written.
            images_review_set(image_ids=[obj.pk], review=obj.review_status)

    def _review(self, request: HttpRequest, queryset: QuerySet, review: str) -> None:
        count = images_review_set(
            image_ids=queryset.values_list("pk", flat=True), review=review
        )
        self.message_user(request, f"{count} image(s) {review}.", messages.SUCCESS)

    @admin.action(description="Approve (with their captions)", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._review(request, queryset, Image.ReviewStatus.APPROVED)

    @admin.action(description="Reject (leave out of datasets)", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._review(request, queryset, Image.ReviewStatus.REJECTED)

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

    def get_urls(self) -> list[Any]:
        return [self.object_url("label", self.label_view), *super().get_urls()]

    def label_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Label one album with Claude: the cost estimate, then the form; with
        no API key, only what to set."""
        album = self.object_or_404(request, object_id)
        images = Image.objects.filter(memberships__album=album)
        refused = not_configured_message()

        def save(form: LabelWithClaudeForm) -> HttpResponse | None:
            options = _job_options(form.cleaned_data)
            return _start_jobs(self, request, [{"album": album, **options}])

        return self.form_view(
            request,
            self.posted(request, LabelWithClaudeForm),
            save=save,
            title=f"Label “{album}” with Claude",
            template="admin/labeling/album_label.html",
            original=album,
            not_configured=refused,
            estimate=None if refused else estimate_note(images),
        )

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
