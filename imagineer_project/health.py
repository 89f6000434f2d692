"""What /api/health reports: enough to monitor, nothing an attacker could use."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from imagineer_project.disk import disk_health

logger = logging.getLogger(__name__)

# A worker cluster that reported within this many seconds counts as alive.
WORKER_FRESH_SECONDS = 60

# The last storage probe per process: {storage settings: (monotonic time, result)}.
_probe_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_probe_lock = threading.Lock()


def health_report() -> dict[str, Any]:
    """Each check's result and the overall `status`: "ok" when every check
    passed, else "degraded" (the view answers 503 then)."""
    checks = {
        "database": _database(),
        "queue": _queue(),
        "storage": _storage(),
        # Cheap (statvfs and one SELECT), so read on every call; low free
        # space on any filesystem we write to is "degraded".
        "disk": disk_health(),
    }
    ok = all(check["ok"] for check in checks.values())
    return {
        "status": "ok" if ok else "degraded",
        "version": settings.IMAGINEER_VERSION,
        "environment": settings.ENVIRONMENT,
        **checks,
    }


def _database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except Exception:
        logger.exception("Health: database check failed")
        return {"ok": False, "vendor": connection.vendor}


def _queue() -> dict[str, Any]:
    """Alive when a django-q2 cluster reported recently (its stats are cached)."""
    from django_q.conf import Conf
    from django_q.status import Stat

    broker = "redis" if settings.REDIS_URL else "orm"
    try:
        stats = Stat.get_all()
    except Exception:
        logger.exception("Health: could not read worker stats")
        stats = []
    now = time.time()
    alive = [
        s
        for s in stats
        if s.status in (Conf.IDLE, Conf.WORKING, Conf.STARTING)
        and now - s.timestamp.timestamp() < WORKER_FRESH_SECONDS
    ]
    return {
        "ok": bool(alive) or settings.Q_CLUSTER.get("sync", False),
        "broker": broker,
        "workers_alive": len(alive),
    }


def _storage() -> dict[str, Any]:
    """The storage probe's result, at most HEALTH_STORAGE_PROBE_SECONDS old: a
    monitor (or anyone) polling /api/health must not write a file per call. The
    lock makes callers that arrive together wait for one probe, not run many."""
    # Keyed by the storage settings, so a changed backend is probed afresh.
    key = repr(settings.STORAGES.get("default"))
    with _probe_lock:
        now = time.monotonic()
        taken = _probe_cache.get(key)
        if taken is None or now - taken[0] >= settings.HEALTH_STORAGE_PROBE_SECONDS:
            taken = (now, _storage_probe())
            _probe_cache.clear()
            _probe_cache[key] = taken
        return dict(taken[1])


def _storage_probe() -> dict[str, Any]:
    """Write, then delete, a tiny file: proof that storage takes writes."""
    # default_storage is a LazyObject: type() would name the wrapper
    # ("DefaultStorage"); __class__ is proxied to the real backend.
    backend = default_storage.__class__.__name__
    key = f"health/{uuid.uuid4().hex}"
    try:
        name = default_storage.save(key, ContentFile(b"ok"))
        default_storage.delete(name)
        return {"ok": True, "backend": backend}
    except Exception:
        logger.exception("Health: storage check failed")
        return {"ok": False, "backend": backend}
