"""The JSON endpoints every kind of run shares, written once.

`add_run_routes(router, RunRoutes(...))` gives a run kind's router:

    GET  ""                  the runs, newest first (status filter + the kind's)
    GET  "/{id}"             one run
    POST "/{id}/cancel"      stop it (409 once it has ended)
    POST "/{id}/retry"       queue a failed or cancelled run again: it resumes
                             where it stopped (202 + Location; 409 otherwise)

The kind says what it is called, its schemas and its querysets; anything more
(creating runs, logs, clean-up) stays in the kind's own api.py.
"""

# No `from __future__ import annotations`: ninja reads the handlers'
# annotations, which name schemas known only inside add_run_routes.

import dataclasses
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema, Status

from imagineer_project.errors import error_responses, get_or_404
from imagineer_project.pagination import PageIn, PageOut, keyset_paginate
from imagineer_project.runs import BaseRun, run_cancel, run_retry


class RunFilterIn(Schema):
    """Filters of a run list; a kind adds its own fields and `apply` them."""

    status: BaseRun.Status | None = None

    def apply(self, runs: QuerySet) -> QuerySet:
        return runs.filter(status=self.status) if self.status else runs


@dataclasses.dataclass(frozen=True)
class RunRoutes:
    model: type[BaseRun]
    what: str  # "Labeling job": in docs and in "Labeling job 7 not found."
    location: str  # "/api/labeling-jobs": where one run is, before "/{id}"
    list_out: type[Schema]
    detail_out: type[Schema]
    # Detail (and after cancel or retry); the model's rows when not given.
    detail: Callable[[], QuerySet] | None = None
    # The list; lists leave out bulky columns. `detail` when not given.
    listing: Callable[[], QuerySet] | None = None
    filters: type[RunFilterIn] = RunFilterIn
    cancel_doc: str = "Stop it: at once if queued, at its next checkpoint if running."
    retry_doc: str = (
        "Queue a failed or cancelled run again; it resumes where it stopped."
    )

    def get(self, run_id: int) -> Any:
        rows = self.detail() if self.detail else self.model.objects.all()
        return get_or_404(rows, run_id, self.what)

    def rows(self) -> QuerySet:
        if self.listing:
            return self.listing()
        return self.detail() if self.detail else self.model.objects.all()

    def accepted(self, response: HttpResponse, run: BaseRun) -> Status:
        """202 with the run's URL in Location: what starting a run answers."""
        response["Location"] = f"{self.location}/{run.pk}"
        return Status(202, self.get(run.pk))


def add_run_routes(router: Router, kind: RunRoutes) -> None:
    name = kind.model._meta.model_name
    plural = f"{kind.what}s"
    filters_in = kind.filters
    list_out, detail_out = kind.list_out, kind.detail_out

    def run_list(
        request: HttpRequest, filters: Query[filters_in], page: Query[PageIn]
    ) -> Any:
        return keyset_paginate(filters.apply(kind.rows()), keys=["-id"], page=page)

    def run_detail(request: HttpRequest, run_id: int) -> Any:
        return kind.get(run_id)

    @error_responses(409)
    def run_stop(request: HttpRequest, run_id: int) -> Any:
        return run_cancel(kind.get(run_id))  # refreshed, relations kept

    @error_responses(409)
    def run_again(request: HttpRequest, response: HttpResponse, run_id: int) -> Any:
        return kind.accepted(response, run_retry(kind.get(run_id)))

    one = "/{int:run_id}"
    routes = (
        ("get", "", run_list, PageOut[list_out], f"{plural}, newest first.", "list"),
        ("get", one, run_detail, detail_out, f"One {kind.what}.", "get"),
        ("post", f"{one}/cancel", run_stop, detail_out, kind.cancel_doc, "cancel"),
        ("post", f"{one}/retry", run_again, {202: detail_out}, kind.retry_doc, "retry"),
    )
    for method, path, view, response, doc, verb in routes:
        view.__doc__ = doc
        view.__name__ = operation = f"{name}_{verb}"
        route = getattr(router, method)
        route(path, response=response, operation_id=operation, url_name=operation)(view)
