"""The admin home as a workflow, and the onward links on object pages.

The home page (`/admin/`) shows five stages in order: Collect → Label →
Curate → Train → Generate, each with its counts and the links that start its
work, then the long jobs of every kind. The project package may not import the
apps (DESIGN.md, Layers), so each app registers what it owns from its
`AppConfig.ready()` (its `workflow.py`):

- `register_counts(stage, fn, permission=...)`: `fn()` returns `Count`s; it
  should cost one aggregate query, never one per row.
- `register_link(stage, label, url, permission=...)`: a start link; `url` is
  called at render time, so a URL another app adds later still resolves.
- `register_onward(model_label, fn)`: `fn(request, obj)` returns
  `[(label, url)]` for the object-tools bar of that model's change page
  (`{% onward_links original %}`, imagineer_project.templatetags.imagineer_workflow).

Everything is keyed, so registering twice (a second `ready()` in tests)
replaces instead of repeating.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.db import connection
from django.db.models import Model, Q, QuerySet, Value
from django.http import HttpRequest
from django.urls import reverse

from imagineer_project.runs import BaseRun, run_models

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    key: str
    title: str
    blurb: str


STAGES = (
    Stage("collect", "Collect", "Bring images into albums."),
    Stage("label", "Label", "Captions, tags and NSFW ratings, from Claude or by hand."),
    Stage("curate", "Curate", "Approve or reject images before they train."),
    Stage("train", "Train", "Dataset versions and LoRA training runs."),
    Stage("generate", "Generate", "Images from a base model and your LoRAs."),
)
STAGE_KEYS = frozenset(stage.key for stage in STAGES)


@dataclass(frozen=True)
class Count:
    label: str  # plural: "albums"; `one` when a single one reads otherwise
    value: int
    url: str = ""
    one: str = ""

    @property
    def noun(self) -> str:
        return self.one if self.value == 1 and self.one else self.label


@dataclass(frozen=True)
class _Counter:
    order: int
    fn: Callable[[], Iterable[Count]]
    permission: str


@dataclass(frozen=True)
class _Link:
    order: int
    label: str
    url_name: str  # reversed when the page is drawn (URLs load after ready())
    permission: str


OnwardFn = Callable[[HttpRequest, Any], Iterable[tuple[str, str]]]

_counters: dict[tuple[str, str], _Counter] = {}
_links: dict[tuple[str, str], _Link] = {}
_onward: dict[str, dict[str, tuple[int, OnwardFn]]] = {}


def _check_stage(stage: str) -> None:
    if stage not in STAGE_KEYS:
        raise ValueError(f"Unknown workflow stage {stage!r}")


def register_counts(
    stage: str,
    fn: Callable[[], Iterable[Count]],
    *,
    permission: str,
    order: int = 100,
) -> None:
    """Show `fn()`'s counts in `stage`'s panel to users with `permission`."""
    _check_stage(stage)
    _counters[(stage, f"{fn.__module__}.{fn.__qualname__}")] = _Counter(
        order, fn, permission
    )


def register_link(
    stage: str,
    label: str,
    url_name: str,
    *,
    permission: str,
    order: int = 100,
) -> None:
    """A start link in `stage`'s panel to the URL named `url_name`, for users
    with `permission`."""
    _check_stage(stage)
    _links[(stage, label)] = _Link(order, label, url_name, permission)


def register_onward(model_label: str, fn: OnwardFn, *, order: int = 100) -> None:
    """Links from a `model_label` ("albums.Album") change page onward."""
    key = f"{fn.__module__}.{fn.__qualname__}"
    _onward.setdefault(model_label.lower(), {})[key] = (order, fn)


def count_rows(*querysets: QuerySet[Any]) -> list[int]:
    """The row counts of several querysets (of any tables) in one query: a
    counter that shows three tables' sizes costs one round trip, not three."""
    parts, params = [], []
    for n, queryset in enumerate(querysets):
        sql, sql_params = queryset.order_by().values("pk").query.sql_with_params()
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) counted_{n})")
        params.extend(sql_params)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        return list(cursor.fetchone())


def admin_url(name: str, *args: Any, query: str = "") -> str:
    """reverse(name, args) with an optional query string."""
    url = reverse(name, args=args)
    return f"{url}?{query}" if query else url


# --- what the home page and the object pages read ---------------------------------


def workflow_stages(request: HttpRequest) -> list[dict[str, Any]]:
    """The stages in order with the counts and links `request.user` may see."""
    user = request.user
    stages = []
    for stage in STAGES:
        counters = sorted(
            (c for (key, _), c in _counters.items() if key == stage.key),
            key=lambda c: c.order,
        )
        links = sorted(
            (link for (key, _), link in _links.items() if key == stage.key),
            key=lambda link: link.order,
        )
        stages.append(
            {
                "stage": stage,
                "counts": [
                    count
                    for counter in counters
                    if user.has_perm(counter.permission)
                    for count in counter.fn()
                ],
                "links": [
                    {"label": link.label, "url": reverse(link.url_name)}
                    for link in links
                    if user.has_perm(link.permission)
                ],
            }
        )
    return stages


def onward_links(request: HttpRequest, obj: Model) -> list[tuple[str, str]]:
    fns = _onward.get(obj._meta.label_lower, {})
    links: list[tuple[str, str]] = []
    for _, fn in sorted(fns.values(), key=lambda entry: entry[0]):
        links.extend(fn(request, obj))
    return links


# --- the jobs panel ------------------------------------------------------------------

_RUN_FIELDS = (
    "pk",
    "status",
    "progress_done",
    "progress_total",
    "message",
    "cancel_requested",
    "waiting",
    "created",
    "finished_at",
)


def _visible_run_models(request: HttpRequest) -> list[type[BaseRun]]:
    return [
        model
        for model in run_models()
        if admin.site.is_registered(model)
        and request.user.has_perm(
            f"{model._meta.app_label}.view_{model._meta.model_name}"
        )
    ]


def _union(models: list[type[BaseRun]], where: Q, order: str, limit: int) -> list:
    # One query for every kind: a UNION ALL of the same columns, the kind's
    # index in `models` added as a constant to tell the rows apart.
    parts = [
        model.objects.filter(where)
        .order_by()
        .annotate(kind=Value(index))
        .values(*_RUN_FIELDS, "kind")
        for index, model in enumerate(models)
    ]
    if not parts:
        return []
    combined = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    return list(combined.order_by(order)[:limit])


def _run_row(model: type[BaseRun], row: dict[str, Any]) -> dict[str, Any]:
    opts = model._meta
    done, total = row["progress_done"], row["progress_total"]
    ended = row["status"] in BaseRun.TERMINAL
    if total:
        percent = min(100, round(100 * done / total))
    else:
        percent = 100 if row["status"] == BaseRun.Status.SUCCEEDED else 0
    return {
        "kind": opts.verbose_name.capitalize(),
        "pk": row["pk"],
        "status": BaseRun.Status(row["status"]).label,
        "status_key": row["status"],
        "ended": ended,
        "percent": percent,
        "done": done,
        "total": total,
        "message": row["message"],
        "cancel_requested": row["cancel_requested"] and not ended,
        "waiting": row["waiting"] and not ended,
        "created": row["created"],
        "finished_at": row["finished_at"],
        "url": reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change", args=[row["pk"]]
        ),
    }


def workflow_runs(
    request: HttpRequest, *, active_limit: int = 20, recent_limit: int = 5
) -> dict[str, list[dict[str, Any]]]:
    """Every kind's active runs (newest first) and the last few that ended:
    two queries, whatever the number of kinds."""
    models = _visible_run_models(request)
    active = _union(models, Q(status__in=BaseRun.ACTIVE), "-created", active_limit)
    recent = _union(
        models, Q(status__in=BaseRun.TERMINAL), "-finished_at", recent_limit
    )
    return {
        "active": [_run_row(models[row["kind"]], row) for row in active],
        "recent": [_run_row(models[row["kind"]], row) for row in recent],
    }
