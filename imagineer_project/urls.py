from __future__ import annotations

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic import RedirectView

from imagineer_project.api import api
from imagineer_project.metrics.views import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    # Prometheus scrapes here (docs/operations.md, "Metrics"); outside /api/:
    # not part of the API, its text format and its own token.
    path("metrics", metrics, name="metrics"),
    path("accounts/", include("django.contrib.auth.urls")),
    # Browsers ask for /favicon.ico whatever the pages link: send them to the
    # SVG (resolved per request, so a hashed static name is followed).
    path(
        "favicon.ico",
        RedirectView.as_view(url=lazy(static, str)("imagineer/favicon.svg")),
        name="favicon",
    ),
    path("", include("imagineer_project.bug_reports.urls")),
    path("", include("training.urls")),
    path("", include("training.generation.urls")),
    path("", include("albums.urls")),
]

handler404 = "imagineer_project.views.not_found"
handler500 = "imagineer_project.views.server_error"
