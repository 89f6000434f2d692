"""Admin for scrape jobs and their crawl logs.

The add page is how a person starts a scrape; the change page follows it (stage,
progress, counts and the live crawl log, refreshed every 3 s while it runs) and
offers cancel, retry and clean up. Writes go through `scraping.services`,
`scraping.cleanup` and the run state machine, exactly as the API's do.
"""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.core.validators import URLValidator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat, truncatechars
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from albums.models import Album, Image, NearDuplicates
from imagineer_project.admin_pages import ImagineerAdmin
from imagineer_project.errors import Invalid
from imagineer_project.forms import add_domain_error
from imagineer_project.ratelimit import RateLimitExceeded, rate_limit_take
from imagineer_project.run_admin import RunAdmin
from scraping import selectors
from scraping.cleanup import ScrapeJobBusy, scrape_job_cleanup
from scraping.maintenance import crawl_log_purged
from scraping.models import OPTION_FIELDS, CrawlLogEntry, ScrapeJob
from scraping.services import scrape_job_create, scrape_job_validate

logger = logging.getLogger(__name__)

LOG_SHOWN = 200
URL_SHOWN = 80


def url_link(url: str, length: int = URL_SHOWN) -> str:
    """A crawled URL, shortened; a link only for http(s), since the log also
    records the `javascript:` and `data:` URLs the crawler refused."""
    shown = truncatechars(url, length)
    if not url.lower().startswith(("http://", "https://")):
        return format_html('<span title="{}">{}</span>', url, shown)
    return format_html(
        '<a href="{}" title="{}" target="_blank" rel="noopener noreferrer nofollow">'
        "{}</a>",
        url,
        url,
        shown,
    )


def image_link(image_id: int | None) -> str:
    if image_id is None:
        return ""
    url = reverse("admin:albums_image_change", args=[image_id])
    return format_html('<a href="{}">#{}</a>', url, image_id)


# --- the add form -----------------------------------------------------------------


def _preset_album(request: HttpRequest) -> Album | None:
    """The album of `?album=<pk>` (the "Scrape into" link), if there is one."""
    pk = request.GET.get("album", "")
    return Album.objects.filter(pk=int(pk)).first() if pk.isdigit() else None


class ScrapeJobAddForm(forms.ModelForm):
    start_url = forms.URLField(
        label="Start URL",
        max_length=2048,
        assume_scheme="https",
        validators=[URLValidator(schemes=["http", "https"])],
        widget=forms.URLInput(attrs={"size": 80}),
        help_text="The crawl follows links on this site only.",
    )
    formats = forms.MultipleChoiceField(
        choices=Image.Format.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Tick none to keep every accepted format.",
    )
    near_duplicates = forms.ChoiceField(
        label="Near duplicates",
        choices=NearDuplicates.choices,
        initial=NearDuplicates.REPLACE_SMALLER,
        required=False,  # left out: the default, as at every door
        help_text="An image that looks like a library image (within the "
        "near-duplicate distance): keep both, skip it, or keep the larger.",
    )

    # "Scrape into" on an album's page: that very album (hidden; ?album=<pk>).
    into_album = forms.ModelChoiceField(
        queryset=Album.objects.all(), required=False, widget=forms.HiddenInput
    )

    class Meta:
        model = ScrapeJob
        fields = ("start_url", "album_name", *OPTION_FIELDS)
        help_texts = {
            "album_name": "A scrape album with this name is reused; otherwise a "
            "new one is made (never a manual or upload album).",
        }

    def clean_near_duplicates(self) -> str:
        return self.cleaned_data["near_duplicates"] or NearDuplicates.REPLACE_SMALLER

    def clean(self) -> dict[str, Any]:
        """The checks of scraping.services.scrape_job_create, so every door
        accepts the same jobs."""
        data = super().clean()
        if self.errors:
            return data
        if data.get("into_album") is not None:
            data["album_name"] = data["into_album"].name
        options = {name: data[name] for name in OPTION_FIELDS if name in data}
        try:
            scrape_job_validate(
                url=data["start_url"], album_name=data["album_name"], **options
            )
        except Invalid as exc:
            add_domain_error(self, exc, fields={"url": "start_url"})
            return data
        # Counted here, where the page can still say no (save_model cannot).
        user = getattr(self, "rate_limit_user", None)
        if user is not None:
            try:
                rate_limit_take("scrape", user=user)
            except RateLimitExceeded as exc:
                add_domain_error(self, exc)
        return data


# --- scrape jobs ------------------------------------------------------------------


@admin.register(ScrapeJob)
class ScrapeJobAdmin(RunAdmin):
    cancel_label = "Cancel job"
    cancel_note = "Cancel requested; the crawl stops within seconds."
    list_display = (
        "id",
        "start_url_short",
        "album_link",
        "status",
        "stage",
        "progress",
        "pages_fetched",
        "images_saved",
        "images_duplicate",
        "images_failed",
        "created",
        "finished_at",
    )
    list_display_links = ("id", "start_url_short")
    list_filter = ("status", "stage")
    search_fields = ("start_url", "album_name")
    list_select_related = ("album",)
    raw_id_fields = ("album", "created_by")
    actions = (*RunAdmin.actions, "clean_up_jobs")
    form = ScrapeJobAddForm
    add_fieldsets = (
        (None, {"fields": ("start_url", "album_name", "into_album")}),
        (
            "Crawl",
            {
                "fields": (
                    "max_depth",
                    "max_pages",
                    "max_images",
                    "render",
                    "max_seconds",
                )
            },
        ),
        (
            "Which images",
            {
                "fields": (
                    "min_width",
                    "min_height",
                    "min_megapixels",
                    "max_aspect_ratio",
                    "formats",
                    "near_duplicate_distance",
                    "near_duplicates",
                )
            },
        ),
        (
            "Politeness",
            {"fields": ("respect_robots", "politeness_delay", "per_host_concurrency")},
        ),
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "start_url_link",
                    "album_links",
                    "status",
                    "stage",
                    "progress_bar",
                    "message",
                    "error",
                )
            },
        ),
        (
            "Counts",
            {
                "fields": (
                    "pages_fetched",
                    "images_found",
                    "images_downloaded",
                    "images_valid",
                    "images_duplicate",
                    "images_saved",
                    "images_failed",
                    "downloaded_size",
                )
            },
        ),
        (
            "Options",
            {
                "fields": tuple(
                    "formats_shown" if name == "formats" else name
                    for name in OPTION_FIELDS
                ),
                "classes": ("collapse",),
            },
        ),
        (
            "History",
            {
                "fields": (
                    "album_name",
                    "created_by",
                    "attempts",
                    "cancel_requested",
                    "created",
                    "started_at",
                    "heartbeat_at",
                    "finished_at",
                )
            },
        ),
        ("Crawl log", {"fields": ("crawl_log",)}),
    )
    change_form_template = "admin/scraping/scrapejob/change_form.html"

    # --- pages --------------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: ScrapeJob | None = None) -> Any:
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_form(
        self,
        request: HttpRequest,
        obj: ScrapeJob | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        if obj is not None:
            kwargs["form"] = forms.ModelForm
            return super().get_form(request, obj, change, **kwargs)
        form = super().get_form(request, obj, change, **kwargs)
        # The add form's clean counts the `scrape` rate limit for this user.
        return type(form.__name__, (form,), {"rate_limit_user": request.user})

    def has_delete_permission(
        self, request: HttpRequest, obj: ScrapeJob | None = None
    ) -> bool:
        return False  # removal is "Clean up", which takes the album with it

    def has_clean_up_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.delete_{opts.model_name}")

    def add_view(
        self,
        request: HttpRequest,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "title": "Start a scrape",
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "preset_album": _preset_album(request),
        }
        return super().add_view(request, form_url, extra_context)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # "Scrape into" on an album's page: ?album=<pk> names its album.
        initial = super().get_changeform_initial_data(request)
        album = _preset_album(request)
        if album is not None:
            initial["album_name"] = album.name
            initial["into_album"] = album.pk
        return initial

    def change_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        return {
            **super().change_context(request, obj),
            "can_clean_up": bool(
                obj and not obj.is_active and self.has_clean_up_permission(request)
            ),
        }

    def save_model(
        self, request: HttpRequest, obj: ScrapeJob, form: Any, change: bool
    ) -> None:
        if change:
            # Saving this page's stale copy would overwrite the worker's counters.
            return
        # The one door for new jobs (the form's clean checked the same fields).
        job = scrape_job_create(
            url=obj.start_url,
            album_name=obj.album_name,
            album=form.cleaned_data.get("into_album"),
            created_by=request.user,
            **{name: getattr(obj, name) for name in OPTION_FIELDS},
        )
        obj.pk = job.pk

    def response_add(
        self, request: HttpRequest, obj: ScrapeJob, post_url_continue: Any = None
    ) -> HttpResponse:
        self.message_user(
            request,
            f"Scrape job #{obj.pk} is queued; this page follows its progress.",
            messages.SUCCESS,
        )
        return _to_job(obj)

    def get_urls(self) -> list[Any]:
        return [self.object_url("cleanup", self.cleanup_view), *super().get_urls()]

    # --- columns and read-only fields ---------------------------------------------

    @admin.display(description="start URL", ordering="start_url")
    def start_url_short(self, obj: ScrapeJob) -> str:
        return truncatechars(obj.start_url, 60)

    @admin.display(description="start URL")
    def start_url_link(self, obj: ScrapeJob) -> str:
        return url_link(obj.start_url, 200)

    @admin.display(description="album", ordering="album__name")
    def album_link(self, obj: ScrapeJob) -> str:
        if obj.album is None:
            return obj.album_name
        url = reverse("admin:albums_album_change", args=[obj.album_id])
        return format_html('<a href="{}">{}</a>', url, obj.album.name)

    @admin.display(description="album")
    def album_links(self, obj: ScrapeJob) -> str:
        if obj.album is None:
            return format_html("{} (not created, or deleted)", obj.album_name)
        return format_html(
            '{} — <a href="{}">public page</a> · <a href="{}">admin</a> · '
            '<a href="{}?album={}">its images</a>',
            obj.album.name,
            obj.album.get_absolute_url(),
            reverse("admin:albums_album_change", args=[obj.album_id]),
            reverse("admin:albums_image_changelist"),
            obj.album_id,
        )

    @admin.display(description="downloaded")
    def downloaded_size(self, obj: ScrapeJob) -> str:
        return filesizeformat(obj.bytes_downloaded)

    @admin.display(description="formats")
    def formats_shown(self, obj: ScrapeJob) -> str:
        return ", ".join(obj.formats) or "All accepted formats"

    @admin.display(description="last entries")
    def crawl_log(self, obj: ScrapeJob) -> str:
        # A log reads oldest first: the last entries, in the order they happened.
        entries = selectors.crawl_log_recent(job=obj, limit=LOG_SHOWN)[::-1]
        if not entries:
            if crawl_log_purged(job=obj):
                return (
                    "The crawl log was purged: logs are kept "
                    f"{settings.CRAWL_LOG_RETENTION_DAYS} days after a job ends "
                    "(CRAWL_LOG_RETENTION_DAYS). The counts above stay."
                )
            return "Nothing crawled yet."
        rows = format_html_join(
            "",
            # Times, codes and sizes never break mid-token; URLs and reasons may.
            '<tr><td class="nowrap">{}</td><td class="nowrap">{}</td>'
            '<td class="nowrap">{}</td><td class="nowrap">{}</td>'
            '<td class="nowrap">{}</td><td class="nowrap">{}</td>'
            "<td>{}</td><td>{}</td><td>{}</td></tr>",
            (_log_cells(entry) for entry in entries),
        )
        full = reverse("admin:scraping_crawllogentry_changelist")
        return format_html(
            '<p class="imagineer-note">The last {} entries, oldest first. '
            '<a href="{}?job__id__exact={}">The whole log</a></p>'
            '<table class="imagineer-results"><thead><tr><th>Time</th><th>Kind</th>'
            "<th>Outcome</th><th>Status</th><th>Bytes</th><th>ms</th><th>URL</th>"
            "<th>Reason</th><th>Image</th></tr></thead><tbody>{}</tbody></table>",
            len(entries),
            full,
            obj.pk,
            rows,
        )

    # --- cancel, retry, clean up --------------------------------------------------

    def cleanup_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self.object_or_404(request, object_id, change=False)
        if not self.has_clean_up_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            self._clean_up(request, [job])
            return HttpResponseRedirect(reverse("admin:scraping_scrapejob_changelist"))
        return self._cleanup_page(request, [job], action=None)

    @admin.action(description="Clean up selected jobs…", permissions=["clean_up"])
    def clean_up_jobs(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        jobs = list(queryset.select_related("album").order_by("pk"))
        if request.POST.get("apply") == "yes":
            self._clean_up(request, jobs)
            return None
        return self._cleanup_page(request, jobs, action="clean_up_jobs")

    def _clean_up(self, request: HttpRequest, jobs: list[ScrapeJob]) -> None:
        deleted = kept = rows = done = 0
        for job in jobs:
            try:
                counts = scrape_job_cleanup(job=job)
            except ScrapeJobBusy as exc:
                self.message_user(request, exc.message, messages.WARNING)
                continue
            done += 1
            deleted += counts["images_deleted"]
            kept += counts["images_kept"]
            rows += counts["crawl_log_rows"]
        if done:
            self.message_user(
                request,
                f"Cleaned up {done} job(s): deleted {deleted} image(s); kept {kept} "
                f"that other albums hold; removed {rows} crawl log row(s).",
                messages.SUCCESS,
            )

    def _cleanup_page(
        self, request: HttpRequest, jobs: list[ScrapeJob], *, action: str | None
    ) -> HttpResponse:
        rows = [
            (job, selectors.scrape_job_cleanup_preview(job=job))
            for job in jobs
            if not job.is_active
        ]
        for job, _counts in rows:
            # What goes with the job row itself: its crawl log (index count).
            job.crawl_log_rows = job.log.count()
        context = {
            **self.admin_site.each_context(request),
            "title": "Clean up scrape jobs",
            "opts": self.opts,
            "rows": rows,
            "active": [job for job in jobs if job.is_active],
            "action": action,
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, "admin/scraping/scrapejob/cleanup.html", context
        )


def _to_job(job: ScrapeJob) -> HttpResponse:
    return HttpResponseRedirect(
        reverse("admin:scraping_scrapejob_change", args=[job.pk])
    )


def _log_cells(entry: CrawlLogEntry) -> tuple[Any, ...]:
    return (
        timezone.localtime(entry.created).strftime("%H:%M:%S"),
        entry.get_kind_display(),
        entry.get_outcome_display(),
        entry.status_code or "",
        filesizeformat(entry.bytes) if entry.bytes else "",
        entry.elapsed_ms,
        url_link(entry.url),
        entry.reason,
        image_link(entry.image_id),
    )


# --- crawl log --------------------------------------------------------------------


@admin.register(CrawlLogEntry)
class CrawlLogEntryAdmin(ImagineerAdmin):
    list_display = (
        "created",
        "job_link",
        "kind",
        "outcome",
        "status_code",
        "size",
        "elapsed_ms",
        "url_shown",
        "reason",
        "image_shown",
    )
    list_filter = ("kind", "outcome")
    search_fields = ("url",)
    # The columns use job_id and image_id only: no join needed.
    list_select_related = False
    raw_id_fields = ("job", "image")
    list_per_page = 200
    # A big crawl logs millions of rows; skip the unfiltered COUNT(*).
    show_full_result_count = False
    ordering = ("id",)  # a log reads oldest first, in crawl order
    fields = (
        "job",
        "kind",
        "outcome",
        "url",
        "page_url",
        "reason",
        "status_code",
        "bytes",
        "elapsed_ms",
        "image",
        "created",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # only the crawler writes the log

    def has_change_permission(
        self, request: HttpRequest, obj: CrawlLogEntry | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: CrawlLogEntry | None = None
    ) -> bool:
        return False  # entries go with their job's clean up

    @admin.display(description="job", ordering="job")
    def job_link(self, obj: CrawlLogEntry) -> str:
        url = reverse("admin:scraping_scrapejob_change", args=[obj.job_id])
        return format_html('<a href="{}">#{}</a>', url, obj.job_id)

    @admin.display(description="bytes", ordering="bytes")
    def size(self, obj: CrawlLogEntry) -> str:
        return filesizeformat(obj.bytes) if obj.bytes else ""

    @admin.display(description="URL", ordering="url")
    def url_shown(self, obj: CrawlLogEntry) -> str:
        return url_link(obj.url)

    @admin.display(description="image")
    def image_shown(self, obj: CrawlLogEntry) -> str:
        return image_link(obj.image_id)
