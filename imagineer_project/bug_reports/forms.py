"""The "Report a problem" form of the HTML pages."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import QueryDict

from imagineer_project.bug_reports.services import (
    MAX_DESCRIPTION,
    PAGE_URL_LENGTH,
    trace_id_valid,
)


class BugReportForm(forms.Form):
    description = forms.CharField(
        label="What went wrong?",
        max_length=MAX_DESCRIPTION,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 70}),
        help_text="What you did, what you expected and what happened instead.",
    )
    # Filled in from the link the person followed; sent back as they were.
    page_url = forms.CharField(
        max_length=PAGE_URL_LENGTH, required=False, widget=forms.HiddenInput
    )
    failing_trace_id = forms.CharField(
        max_length=64, required=False, widget=forms.HiddenInput
    )

    @staticmethod
    def initial_from_query(query: QueryDict) -> dict[str, Any]:
        """The page and trace of a "Report a problem" link (a malformed trace
        id is dropped: the person could not fix it)."""
        trace = query.get("trace", "")
        return {
            "page_url": query.get("page", "")[:PAGE_URL_LENGTH],
            "failing_trace_id": trace if trace_id_valid(trace) else "",
        }
