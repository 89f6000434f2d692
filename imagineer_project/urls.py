from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from imagineer_project.api import api

admin.site.site_header = "Imagineer"
admin.site.site_title = "Imagineer admin"
admin.site.index_title = "Datasets, labels and runs"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("imagineer_project.bug_reports.urls")),
    path("", include("training.urls")),
    path("", include("training.generation.urls")),
    path("", include("albums.urls")),
]

handler404 = "imagineer_project.views.not_found"
handler500 = "imagineer_project.views.server_error"
