"""The NinjaAPI root: routers, auth and the one error format."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import register_converter
from ninja import NinjaAPI, Router, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema
from ninja.operation import Operation
from ninja.parser import Parser

from albums.api import images_router, uploads_router
from albums.api import router as albums_router
from imagineer_project import __version__
from imagineer_project.bug_reports.api import admin_router as bug_reports_admin_router
from imagineer_project.bug_reports.api import router as bug_reports_router
from imagineer_project.disk_api import router as disk_router
from imagineer_project.errors import (
    MEANINGS,
    DomainError,
    ErrorOut,
    domain_error_response,
    error_response,
)
from imagineer_project.health import health_report
from imagineer_project.ratelimit import rate_limit_meter_headers, rate_limit_meter_start
from labeling import analytics_api
from labeling.api import albums_router as labeling_albums_router
from labeling.api import images_router as labeling_images_router
from labeling.api import jobs_router as labeling_jobs_router
from labeling.api import labels_router
from legacy.api import router as legacy_imports_router
from scraping.api import router as scrape_jobs_router
from training import checkpoints_api
from training.api import loras_router, runs_router
from training.datasets import api as datasets_api
from training.generation.api import generate_router
from training.generation.api import jobs_router as generation_jobs_router
from training.sets import api as sets_api

logger = logging.getLogger(__name__)

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}


def security_schemes() -> dict[str, Any]:
    """How the API really authenticates (imagineer_project.middleware and
    permissions.staff_required): a staff session, or an API token."""
    return {
        "sessionCookie": {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "A signed-in user's session (sign in at /admin/); "
            "every operation but filing a bug report needs a staff user. "
            "Writes (POST, PUT, PATCH, DELETE) also need the CSRF token in the "
            "X-CSRFToken header, else 403.",
        },
        "bearerToken": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "imt_…",
            "description": "`Authorization: Bearer imt_…`, a user's API token "
            "(`manage.py create_api_token USERNAME`); no CSRF needed. As with "
            "sessions, every operation but filing a bug report needs a staff user.",
        },
    }


def inferred_error_statuses(operation: Operation, details: dict[str, Any]) -> set[int]:
    """The error statuses an operation can answer, from what it takes: 401/403
    when it needs a staff user, 404 with a path parameter, 422 with input that
    is validated (a query, a body, a path parameter without a converter), 400
    with a body (not a JSON object); plus what its handler declares with
    errors.error_responses (409, 413, 429, 503, a 404 for an id in the body)."""
    statuses: set[int] = set()
    if operation.auth_callbacks:
        statuses |= {401, 403}
    parameters = details.get("parameters") or []
    if any(p.get("in") == "path" for p in parameters):
        statuses.add(404)
    # A path parameter with a URL converter ({int:id}) never reaches
    # validation (a non-number is a 404: no such endpoint), and any text is a
    # valid plain string one: neither can be a 422.
    checked = [
        p
        for p in parameters
        if p.get("in") != "path"
        or (
            f"{{{p['name']}}}" in operation.path
            and p.get("schema", {}).get("type") != "string"
        )
    ]
    if checked or details.get("requestBody"):
        statuses.add(422)
    if details.get("requestBody"):
        statuses.add(400)
    statuses |= set(getattr(operation.view_func, "error_statuses", ()))
    return statuses


def _renamed(value: Any, renames: dict[str, str]) -> Any:
    """`value` with each `$ref` to a renamed definition pointing at its new name."""
    if not renames:
        return value
    if isinstance(value, list):
        return [_renamed(item, renames) for item in value]
    if not isinstance(value, dict):
        return value
    result = {k: _renamed(v, renames) for k, v in value.items()}
    ref = result.get("$ref")
    prefix = "#/components/schemas/"
    if isinstance(ref, str) and ref.startswith(prefix):
        result["$ref"] = prefix + renames.get(ref[len(prefix) :], ref[len(prefix) :])
    return result


class ImagineerOpenAPISchema(OpenAPISchema):
    """ninja's schema, plus what it cannot see: the error envelope on every
    status an operation can answer, and the security each operation needs
    (anonymous reads say `{}` first: no credentials needed)."""

    def operation_details(self, operation: Operation) -> dict[str, Any]:
        tag = (operation.tags or ["api"])[0]
        self._prefix = "".join(word.capitalize() for word in tag.split())
        details = super().operation_details(operation)
        responses = details["responses"]
        for status in sorted(inferred_error_statuses(operation, details)):
            responses.setdefault(
                status,
                {
                    "description": MEANINGS[status],
                    "content": {"application/json": {"schema": ERROR_REF}},
                },
            )
        # An optional JSON body is sent or left out; `null` is no object.
        body = details.get("requestBody", {}).get("content", {})
        json_body = body.get("application/json", {})
        options = json_body.get("schema", {}).get("anyOf", [])
        if {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            json_body["schema"] = rest[0] if len(rest) == 1 else {"anyOf": rest}
        schemes: list[dict[str, list]] = [{"sessionCookie": []}, {"bearerToken": []}]
        details["security"] = schemes if operation.auth_callbacks else [{}, *schemes]
        return details

    # ninja files every model's definitions under their bare class names, so a
    # second `Kind` or `LabelOut` silently replaced the first and operations
    # showed another enum's values. A definition whose name is taken by a
    # different one is filed under "<Tag><name>" (ScrapingKind) and its
    # references follow.
    _renames: list[dict[str, str]]

    def add_schema_definitions(self, definitions: dict) -> None:
        renames = self._renames[-1] if getattr(self, "_renames", None) else {}
        for name, definition in definitions.items():
            taken = self.schemas.get(name)
            if taken is not None and taken != definition:
                same = [k for k, v in self.schemas.items() if v == definition]
                prefix = getattr(self, "_prefix", "") or self._model
                renames[name] = same[0] if same else f"{prefix}{name}"
        for name, definition in definitions.items():
            self.schemas[renames.get(name, name)] = _renamed(definition, renames)

    def _create_schema_from_model(
        self, model: Any, *args: Any, **kwargs: Any
    ) -> tuple[dict[str, Any], bool]:
        with self._renaming(model) as renames:
            schema, required = super()._create_schema_from_model(model, *args, **kwargs)
        return _renamed(schema, renames), required

    def _extract_parameters(self, model: Any) -> list[dict[str, Any]]:
        with self._renaming(model) as renames:
            parameters = super()._extract_parameters(model)
        return _renamed(parameters, renames)

    @contextlib.contextmanager
    def _renaming(self, model: Any) -> Iterator[dict[str, str]]:
        if not hasattr(self, "_renames"):
            self._renames = []
        outer = getattr(self, "_model", "")
        self._model = getattr(model, "__name__", "Model")
        self._renames.append({})
        try:
            yield self._renames[-1]
        finally:
            self._model = outer
            self._renames.pop()

    def get_components(self) -> dict[str, Any]:
        components = super().get_components()
        components["schemas"]["ErrorOut"] = ErrorOut.model_json_schema()
        components["securitySchemes"] = security_schemes()
        return components


class ObjectBodyParser(Parser):
    """Every request body the API takes is a JSON object (the schema says so);
    anything else (`[null]`, `3`) is a 400 like malformed JSON, not an empty
    object that a PATCH would accept. An optional body is left out, not `null`
    (the schema says so: see ImagineerOpenAPISchema.operation_details)."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        data = super().parse_body(request)
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return data


class ImagineerAPI(NinjaAPI):
    def get_openapi_schema(
        self,
        *,
        path_prefix: str | None = None,
        path_params: dict[str, Any] | None = None,
    ) -> OpenAPISchema:
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        return ImagineerOpenAPISchema(self, path_prefix)

    # Each API request gets a rate-limit meter: a handler's checks (through
    # its services) leave their usage there, and the answer carries it as
    # RateLimit-* headers, success or error (imagineer_project.ratelimit).
    def create_temporal_response(self, request: HttpRequest) -> HttpResponse:
        rate_limit_meter_start(request)
        return super().create_temporal_response(request)

    def create_response(
        self,
        request: HttpRequest,
        data: Any,
        *,
        status: int | None = None,
        temporal_response: HttpResponse | None = None,
    ) -> HttpResponse:
        response = super().create_response(
            request, data, status=status, temporal_response=temporal_response
        )
        return _with_rate_limit_headers(response)

    def on_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse:
        return _with_rate_limit_headers(super().on_exception(request, exc))


def _with_rate_limit_headers(response: HttpResponse) -> HttpResponse:
    for name, value in rate_limit_meter_headers().items():
        if name not in response:  # a refusal's own figures win
            response[name] = value
    return response


api = ImagineerAPI(
    title="Imagineer API",
    version=__version__,
    description="Albums, images, labels, scraping, training and generation. "
    "Reads of public items are open; everything else needs a staff session "
    "(with CSRF) or `Authorization: Bearer <token>` "
    "(`manage.py create_api_token USERNAME`).",
    docs_url="/docs",
    urls_namespace="api",
    parser=ObjectBodyParser(),
)


@api.exception_handler(DomainError)
def _domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    """Every expected failure a service or selector raises, in one shape."""
    return domain_error_response(request, exc)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return error_response(request, exc.status_code, str(exc))


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(request, 401, "Sign in as a staff user or send an API token.")


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return error_response(
        request, 422, "The request is not valid.", details={"errors": exc.errors}
    )


@api.exception_handler(Http404)
@api.exception_handler(ObjectDoesNotExist)
def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(request, 404, str(exc) or "Not found.")


@api.exception_handler(PermissionDenied)
def _denied(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(request, 403, str(exc) or "Forbidden.")


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("Unhandled API error on %s %s", request.method, request.path)
    return error_response(request, 500, "Internal server error; quote the trace id.")


class HealthOut(Schema):
    status: str
    version: str
    environment: str
    database: dict
    queue: dict
    storage: dict
    # {"ok", "filesystems": [{"roles", "percent_free", "low"}]}: no sizes or paths.
    disk: dict


ops = Router(tags=["ops"])


@ops.get("/health", response={200: HealthOut, 503: HealthOut})
def health(request: HttpRequest) -> Any:
    """Liveness of the database, the worker queue and storage; 503 with the
    same report when any of them is down."""
    report = health_report()
    return Status(200 if report["status"] == "ok" else 503, report)


api.add_router("", ops)
api.add_router("/albums", albums_router)
api.add_router("/albums", labeling_albums_router)
api.add_router("/albums", analytics_api.albums_router)
api.add_router("/albums", sets_api.slots_router)
api.add_router("/images", images_router)
api.add_router("/images", labeling_images_router)
api.add_router("/labels", analytics_api.labels_router)
api.add_router("/labels", labels_router)
api.add_router("/labeling-jobs", labeling_jobs_router)
api.add_router("/training/runs", runs_router)
api.add_router("/training/runs", checkpoints_api.router)
api.add_router("/training", datasets_api.router)
api.add_router("/training/dataset-exports", datasets_api.exports_router)
api.add_router("/loras", loras_router)
api.add_router("/uploads", uploads_router)
api.add_router("/scrape-jobs", scrape_jobs_router)
api.add_router("/generate", generate_router)
api.add_router("/generation-jobs", generation_jobs_router)
api.add_router("/set-templates", sets_api.templates_router)
api.add_router("/set-runs", sets_api.runs_router)
api.add_router("/admin/legacy-imports", legacy_imports_router)
api.add_router("/bug-reports", bug_reports_router)
api.add_router("/admin/bug-reports", bug_reports_admin_router)
api.add_router("/admin", disk_router)

# Last, so it matches only what no operation does (an unknown path, or an id
# that is not a number): the error envelope, not Django's HTML 404 page.
unmatched = Router()


class _Anything:
    """A path converter for any rest of a path, newlines and all (Django's
    `path` stops at them)."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(_Anything, "anything")


@unmatched.api_operation(
    ["GET", "POST", "PUT", "PATCH", "DELETE"],
    "/{anything:rest}",
    include_in_schema=False,
)
def no_such_endpoint(request: HttpRequest, rest: str) -> HttpResponse:
    return error_response(request, 404, f"No API endpoint at {request.path}.")


api.add_router("", unmatched)
