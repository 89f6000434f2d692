from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser


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
        "all three."
    )

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

    def handle(
        self,
        *args: Any,
        addr: str,
        no_worker: bool,
        no_gpu_worker: bool,
        **options: Any,
    ) -> None:
        host, _, port = addr.rpartition(":")
        host = host or "127.0.0.1"
        # runserver ends the process with os._exit on a taken port, which would
        # leave the workers behind: check first.
        if not _port_free(host, int(port)):
            raise CommandError(f"{addr} is in use (Imagineer already running?).")
        # A plain `kill` stops the workers too, like Ctrl-C.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        workers = []
        if not no_worker:
            workers.append(self._worker())
            if not no_gpu_worker:
                # django-q2 picks the cluster's settings from Q_CLUSTER_NAME
                # (Q_CLUSTER["ALT_CLUSTERS"]["gpu"] in settings).
                workers.append(self._worker(Q_CLUSTER_NAME="gpu"))
        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
        self.stdout.write(
            self.style.SUCCESS(
                f"\nImagineer is starting at http://{shown}:{port}/  "
                f"(admin: http://{shown}:{port}/admin/, API docs: "
                f"http://{shown}:{port}/api/docs)\n"
            )
        )
        try:
            # No autoreloader: it would re-run this command and start more workers.
            call_command("runserver", addr, use_reloader=False)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.kill()

    def _worker(self, **env: str) -> subprocess.Popen:
        base = {k: v for k, v in os.environ.items() if k != "Q_CLUSTER_NAME"}
        return subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], env={**base, **env}
        )
