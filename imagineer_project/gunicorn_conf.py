"""gunicorn settings for `manage.py serve --production` (docs/deploy.md).

`serve` passes --bind and --workers; everything else is here. To run gunicorn
yourself: `gunicorn -c python:imagineer_project.gunicorn_conf
imagineer_project.wsgi:application`. Any value can be overridden per host
through gunicorn's own GUNICORN_CMD_ARGS (e.g. "--timeout 300").
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from pathlib import Path
from typing import Any

wsgi_app = "imagineer_project.wsgi:application"
# Loopback: the reverse proxy in front is the only client (docs/deploy.md).
bind = "127.0.0.1:8000"
# Sync workers: Django code is blocking, and the reverse proxy buffers slow
# clients (uploads included) so a worker is never held by a slow network.
worker_class = "sync"
# Uploads decode and hash images inside the request (up to
# IMAGINEER_UPLOAD_INLINE_PIXELS); past this a worker is killed and restarted.
timeout = 120
# SIGTERM lets requests in flight finish for this long.
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then: a slow leak (image libraries) cannot grow forever.
max_requests = 2000
max_requests_jitter = 200
# The app is imported once, in the master, and warmed there (`when_ready`):
# a new worker (at start, and each time one is recycled) is a fork, not ~1 s
# of imports plus ~0.6 s building the API's schemas on its first request,
# which under load stalled the requests queued behind it (docs/benchmarks.md,
# "Pages"). The master opens no database connection a worker could inherit.
preload_app = True
# The heartbeat file on tmpfs: a worker blocked on a slow disk is not killed
# for not touching it in time.
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None
# Access lines would repeat what the app logs (and the metrics count);
# gunicorn's own errors go to stderr beside the app's log lines.
accesslog = None
errorlog = "-"
proc_name = "imagineer-web"
# gunicorn 24+ opens a control socket at one path per user
# (~/.gunicorn/gunicorn.ctl): a second server on the host would take it over.
# Nothing here uses it.
control_socket_disable = True


# Templates every public page renders: compiled once in the master (the cached
# loader keeps them), shared by every worker.
WARM_TEMPLATES = (
    "base.html",
    "albums/gallery.html",
    "albums/album.html",
    "albums/image.html",
    "albums/_pagination.html",
    "albums/_thumb.html",
    "404.html",
    "500.html",
)


def warm_up() -> None:
    """Do in the master what every worker would do on its first requests:
    import the URLconf (the API and its schemas), compile the page templates,
    read the static files' manifest. Then leave the database closed and move
    what was built out of the garbage collector's way (`gc.freeze`): the
    workers neither copy those pages by collecting them nor spend time
    traversing them."""
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.db import connections
    from django.template.loader import get_template
    from django.urls import get_resolver, reverse

    get_resolver()._populate()
    reverse("gallery")
    for name in WARM_TEMPLATES:
        try:
            get_template(name)
        except Exception:  # a page that cannot compile fails in its request
            logging.getLogger(__name__).exception("Could not warm %s", name)
    # No manifest yet (collectstatic not run): each request says so itself.
    with contextlib.suppress(ValueError):
        staticfiles_storage.url("imagineer/site.css")
    connections.close_all()
    gc.collect()
    gc.freeze()


def when_ready(server: Any) -> None:
    if server.cfg.preload_app:
        warm_up()


def child_exit(server: Any, worker: Any) -> None:
    """A dead worker's live gauges leave /metrics (prometheus-client's
    multiprocess mode; `serve --production` sets the folder)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
