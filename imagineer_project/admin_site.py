"""The admin site: Django's, with its apps in the order of the work.

Django lists apps alphabetically, which puts "Django Q" and "Authentication
and authorization" between albums and labeling in the sidebar of every admin
page. Here the apps follow the workflow (collect, label, scrape, train,
import), then the project's housekeeping, then Django's own.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

# By app label; an app not named here comes after these, alphabetically.
APP_ORDER = (
    "albums",
    "labeling",
    "scraping",
    "training",
    "legacy",
    "imagineer",
    "auth",
    "django_q",
)


class ImagineerAdminSite(admin.AdminSite):
    site_header = "Imagineer"
    site_title = "Imagineer admin"
    index_title = "Datasets, labels and runs"

    def get_app_list(
        self, request: HttpRequest, app_label: str | None = None
    ) -> list[dict[str, Any]]:
        rank = {label: n for n, label in enumerate(APP_ORDER)}

        def place(app: dict[str, Any]) -> tuple[int, str]:
            return rank.get(app["app_label"], len(rank)), app["name"]

        return sorted(super().get_app_list(request, app_label), key=place)
