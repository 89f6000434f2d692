"""The admin's disk pieces: the low-space banner on every page and the usage
panel on the index (templates/admin/imagineer/_disk_banner.html,
templates/admin/index.html)."""

from __future__ import annotations

from typing import Any

from django import template

from imagineer_project.disk import disk_alerts, disk_overview, disk_size

register = template.Library()


def _staff(context: template.Context) -> bool:
    # The login page (and any page a visitor sees) has no staff user: free
    # space is for those who can act on it.
    user = getattr(context.get("request"), "user", None)
    return bool(user and user.is_active and user.is_staff)


@register.simple_tag(takes_context=True)
def disk_low_roles(context: template.Context) -> list[Any]:
    """The DiskAlert rows alerting now, for a staff user; one query."""
    return disk_alerts() if _staff(context) else []


@register.simple_tag(takes_context=True)
def disk_usage(context: template.Context) -> dict[str, Any] | None:
    """imagineer_project.disk.disk_overview for a staff user, else None."""
    return disk_overview() if _staff(context) else None


@register.filter
def bytes_spoken(value: int | None) -> str:
    """1073741824 -> "1 GB"; None -> "not measured yet"."""
    return "not measured yet" if value is None else disk_size(value)
