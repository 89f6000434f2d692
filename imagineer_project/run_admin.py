"""Admin display helpers shared by every long job's admin (runs.BaseRun)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from imagineer_project.runs import BaseRun


class RunProgressMixin:
    """`progress` (done/total, for lists) and `progress_bar` (change pages)."""

    progress_unit = ""  # e.g. " files", after the "of N"

    @admin.display(description="progress")
    def progress(self, obj: BaseRun) -> str:
        return f"{obj.progress_done}/{obj.progress_total}"

    @admin.display(description="progress")
    def progress_bar(self, obj: BaseRun) -> str:
        return format_html(
            '<progress max="100" value="{}" class="imagineer-progress">{}%</progress> '
            "{}% ({} of {}{})",
            obj.percent,
            obj.percent,
            obj.percent,
            obj.progress_done,
            obj.progress_total,
            self.progress_unit,
        )
