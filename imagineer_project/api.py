"""The NinjaAPI root: routers, auth and the one error format."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Router, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError

from albums.api import images_router, uploads_router
from albums.api import router as albums_router
from imagineer_project import __version__
from imagineer_project.errors import (
    DomainError,
    domain_error_response,
    error_response,
)
from imagineer_project.health import health_report
from labeling import analytics_api
from labeling.api import albums_router as labeling_albums_router
from labeling.api import images_router as labeling_images_router
from labeling.api import jobs_router as labeling_jobs_router
from labeling.api import labels_router
from legacy.api import router as legacy_imports_router
from scraping.api import router as scrape_jobs_router
from training.api import loras_router, runs_router
from training.datasets import api as datasets_api
from training.generation.api import generate_router
from training.generation.api import jobs_router as generation_jobs_router
from training.sets import api as sets_api

logger = logging.getLogger(__name__)

api = NinjaAPI(
    title="Imagineer API",
    version=__version__,
    description="Albums, images, labels, scraping, training and generation. "
    "Reads of public items are open; everything else needs a staff session "
    "(with CSRF) or `Authorization: Bearer <token>` "
    "(`manage.py create_api_token USERNAME`).",
    docs_url="/docs",
    urls_namespace="api",
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
