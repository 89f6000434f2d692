"""The admin home's workflow panels and the onward links of object pages
(imagineer_project.workflow; templates/admin/index.html and the change forms
of albums, training runs and LoRAs)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from imagineer_project import workflow

register = template.Library()

# Django's own apps and the project's housekeeping: listed last on the home
# page, under "Administration", below the apps a user works in.
ADMINISTRATION_APPS = frozenset({"auth", "django_q", "imagineer"})


def _staff_request(context: template.Context) -> Any:
    request = context.get("request")
    user = getattr(request, "user", None)
    return request if user and user.is_active and user.is_staff else None


@register.simple_tag(takes_context=True)
def workflow_stages(context: template.Context) -> list[dict[str, Any]]:
    request = _staff_request(context)
    return workflow.workflow_stages(request) if request else []


@register.simple_tag(takes_context=True)
def workflow_runs(context: template.Context) -> dict[str, list[dict[str, Any]]]:
    request = _staff_request(context)
    return workflow.workflow_runs(request) if request else {"active": [], "recent": []}


@register.simple_tag
def split_app_list(app_list: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The admin's app list in two: the apps of the workflow, then Django's
    internals and the project's housekeeping."""
    return {
        "work": [a for a in app_list if a["app_label"] not in ADMINISTRATION_APPS],
        "administration": [
            a for a in app_list if a["app_label"] in ADMINISTRATION_APPS
        ],
    }


@register.simple_tag(takes_context=True)
def onward_links(context: template.Context, obj: Any) -> SafeString:
    """`<li><a>` items for an object page's tools bar, from the registry."""
    request = _staff_request(context)
    if request is None or obj is None or obj.pk is None:
        return SafeString("")
    return format_html_join(
        "\n",
        '<li><a href="{}" class="onward-link">{}</a></li>',
        ((url, label) for label, url in workflow.onward_links(request, obj)),
    )


@register.simple_tag
def progress_bar(percent: int, label: str = "") -> SafeString:
    return format_html(
        '<progress class="workflow-progress" max="100" value="{}" aria-label="{}">'
        "{}%</progress>",
        percent,
        label or f"{percent}%",
        percent,
    )
