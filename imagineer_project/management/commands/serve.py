"""`manage.py serve`: the web server and both django-q2 worker clusters in one
command; `--production` runs gunicorn with DEBUG off (docs/deploy.md)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

# After SIGTERM the children get this long to finish (gunicorn lets requests in
# flight end for 30 s); then their whole process groups are killed. A task cut
# short is handed out again once its cluster's `retry` passes.
STOP_SECONDS = 40


def _port_free(host: str, port: int) -> bool:
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class Command(BaseCommand):
    help = (
        "Run the web server with the two django-q2 workers: the general cluster "
        "and the gpu cluster (one worker: training and generation). Ctrl-C stops "
        "all three. --production serves through gunicorn with DEBUG off, after "
        "the deploy checks pass."
    )
    # runserver checks in development, and `check --deploy` runs in the
    # production children's environment: checking here too would only add a
    # second Django start.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--addr",
            default="127.0.0.1:8000",
            help="host:port to listen on (default 127.0.0.1:8000)",
        )
        parser.add_argument(
            "--no-worker", action="store_true", help="start only the web server"
        )
        parser.add_argument(
            "--no-gpu-worker",
            action="store_true",
            help="leave out the gpu worker (it runs on another machine)",
        )
        parser.add_argument(
            "--production",
            action="store_true",
            help="gunicorn, WhiteNoise and DEBUG off; refuses a configuration "
            "that fails `check --deploy` or has migrations to apply",
        )
        parser.add_argument(
            "--workers",
            type=int,
            help="gunicorn worker processes (default IMAGINEER_WEB_WORKERS, "
            "0 or unset: 2 per core + 1); with --production",
        )
        parser.add_argument(
            "--migrate",
            action="store_true",
            help="apply migrations before starting; with --production",
        )

    def handle(
        self,
        *args: Any,
        addr: str,
        no_worker: bool,
        no_gpu_worker: bool,
        production: bool,
        workers: int | None,
        migrate: bool,
        **options: Any,
    ) -> None:
        host, _, port = addr.rpartition(":")
        host = host or "127.0.0.1"
        if not production and (workers is not None or migrate):
            raise CommandError("--workers and --migrate go with --production.")
        if workers is not None and workers < 1:
            raise CommandError("--workers must be at least 1.")
        # runserver ends the process with os._exit on a taken port, which would
        # leave the workers behind: check first.
        if not _port_free(host, int(port)):
            raise CommandError(f"{addr} is in use (Imagineer already running?).")
        clusters = self._clusters(no_worker=no_worker, no_gpu_worker=no_gpu_worker)
        if production:
            self._production(
                host=host,
                port=port,
                workers=workers,
                migrate=migrate,
                clusters=clusters,
            )
        else:
            self._development(host=host, port=port, clusters=clusters)

    def _clusters(self, *, no_worker: bool, no_gpu_worker: bool) -> list[str]:
        """The django-q2 clusters to start: "" is the general one; django-q2
        picks another's settings from Q_CLUSTER_NAME (Q_CLUSTER["ALT_CLUSTERS"])."""
        if no_worker:
            return []
        return [""] if no_gpu_worker else ["", "gpu"]

    def _banner(self, host: str, port: str, extra: str = "") -> None:
        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
        self.stdout.write(
            self.style.SUCCESS(
                f"\nImagineer{extra} is starting at http://{shown}:{port}/  "
                f"(admin: http://{shown}:{port}/admin/, API docs: "
                f"http://{shown}:{port}/api/docs)\n"
            )
        )

    def _development(self, *, host: str, port: str, clusters: list[str]) -> None:
        # A plain `kill` stops the workers too, like Ctrl-C.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        env = _child_env(production=False)
        workers = [_qcluster(env, name) for name in clusters]
        self._banner(host, port)
        try:
            # No autoreloader: it would re-run this command and start more workers.
            call_command("runserver", f"{host}:{port}", use_reloader=False)
        finally:
            _stop(workers, timeout=15)

    def _production(
        self,
        *,
        host: str,
        port: str,
        workers: int | None,
        migrate: bool,
        clusters: list[str],
    ) -> None:
        env = _child_env(production=True)
        # The children run with DEBUG off whatever this process was started
        # with, so the checks run in a child too, with their environment.
        _preflight(env, migrate=migrate)
        count = workers or settings.WEB_WORKERS or 2 * _cores() + 1
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        children = {"web": _gunicorn(env, host=host, port=port, workers=count)}
        for name in clusters:
            children[f"{name or 'general'} worker"] = _qcluster(env, name)
        self._banner(host, port, f" (production, {count} web workers)")
        try:
            failed = _supervise(children, stop)
        finally:
            _stop(list(children.values()), timeout=STOP_SECONDS)
        if failed:
            raise CommandError(f"The {failed} stopped; stopped everything else too.")


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _child_env(*, production: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "Q_CLUSTER_NAME"}
    env.setdefault("DJANGO_SETTINGS_MODULE", "imagineer_project.settings")
    if production:
        env["DEBUG"] = "false"
        env.setdefault("IMAGINEER_ENVIRONMENT", "production")
    return env


def _preflight(env: dict[str, str], *, migrate: bool) -> None:
    """Run `preflight` in a child with the production environment; its
    message becomes this command's error, before anything has started."""
    code = (
        "from imagineer_project.management.commands.serve import preflight; "
        f"preflight(migrate={migrate!r})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        sys.stderr.write(result.stderr)  # the deploy checks' warnings, if any
    else:
        raise CommandError("Refusing to start in production:\n" + result.stderr.strip())


def preflight(*, migrate: bool) -> None:
    """In the child environment: the boot checks (settings refuse a missing
    SECRET_KEY, ALLOWED_HOSTS or DATABASE_URL), `check --deploy`, migrations,
    then collectstatic into STATIC_ROOT for WhiteNoise's manifest storage.
    One interpreter for all of it: each Django start costs seconds."""
    import django
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management.base import SystemCheckError

    try:
        django.setup()
        call_command("check", deploy=True)
    except (ImproperlyConfigured, SystemCheckError) as error:
        sys.stderr.write(f"{error}\n")
        sys.exit(2)
    if migrate:
        call_command("migrate", interactive=False, verbosity=1)
    else:
        _refuse_unapplied_migrations()
    call_command("collectstatic", interactive=False, verbosity=1)


def _refuse_unapplied_migrations() -> None:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        sys.stderr.write(
            f"{len(plan)} migrations are not applied: run `manage.py migrate` "
            "first (or add --migrate on a single web host).\n"
        )
        sys.exit(2)


def _multiproc_dir(env: dict[str, str], port: str) -> str:
    """prometheus-client's multiprocess folder for this server's workers:
    emptied at each start, since values left by the last run's processes would
    be added to this run's (docs/operations.md, "Metrics")."""
    folder = Path(
        env.get("PROMETHEUS_MULTIPROC_DIR")
        or settings.VAR_DIR / "prometheus" / f"web-{port}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    return str(folder)


def _gunicorn(
    env: dict[str, str], *, host: str, port: str, workers: int
) -> subprocess.Popen:
    web_env = env | {"PROMETHEUS_MULTIPROC_DIR": _multiproc_dir(env, port)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:imagineer_project.gunicorn_conf",
            "--bind",
            f"{host}:{port}",
            "--workers",
            str(workers),
            "imagineer_project.wsgi:application",
        ],
        cwd=settings.BASE_DIR,
        env=web_env,
        # Its own process group: Ctrl-C reaches only this command, which stops
        # the children in order and can kill a whole group that hangs.
        start_new_session=True,
    )


def _qcluster(env: dict[str, str], name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=settings.BASE_DIR,
        env=env | ({"Q_CLUSTER_NAME": name} if name else {}),
        start_new_session=True,
    )


def _supervise(children: dict[str, subprocess.Popen], stop: threading.Event) -> str:
    """Wait for SIGTERM/Ctrl-C (returns "") or a child's exit (returns its
    name): a half-running server would look alive to its supervisor."""
    while not stop.is_set():
        for name, child in children.items():
            if child.poll() is not None:
                return name
        stop.wait(0.5)
    return ""


def _stop(children: list[subprocess.Popen], *, timeout: float) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        # Whatever the child left in its group (a worker still in a task).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
