from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the web server and a django-q2 worker together (Ctrl-C stops both)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--addr",
            default="127.0.0.1:8000",
            help="host:port to listen on (default 127.0.0.1:8000)",
        )
        parser.add_argument(
            "--no-worker", action="store_true", help="start only the web server"
        )

    def handle(self, *args: Any, addr: str, no_worker: bool, **options: Any) -> None:
        worker = None
        if not no_worker:
            worker = subprocess.Popen([sys.executable, "manage.py", "qcluster"])
        host = addr.rsplit(":", 1)[0]
        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
        port = addr.rsplit(":", 1)[1]
        self.stdout.write(
            self.style.SUCCESS(
                f"\nImagineer is starting at http://{shown}:{port}/  "
                f"(admin: http://{shown}:{port}/admin/, API docs: "
                f"http://{shown}:{port}/api/docs)\n"
            )
        )
        try:
            # No autoreloader: it would re-run this command and start a second worker.
            call_command("runserver", addr, use_reloader=False)
        finally:
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.kill()
