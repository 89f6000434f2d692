from __future__ import annotations

from django.urls import path

from imagineer_project.bug_reports import views

urlpatterns = [
    path("report-problem/", views.report_problem_page, name="report-problem"),
]
