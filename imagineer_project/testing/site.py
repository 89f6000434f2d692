"""A website on loopback for the tests that scrape: a quiet request handler
with one way to answer, and a context manager that serves it and lets the
scraper reach it."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SiteHandler(BaseHTTPRequestHandler):
    """Subclass with a do_GET that calls `answer`."""

    def log_message(self, *args: Any) -> None:
        pass

    def answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # A scraper that gave up (a timeout under test) has closed the socket.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


@contextlib.contextmanager
def serve_site(
    handler: type[BaseHTTPRequestHandler], settings: Any, *, timeout: float = 5.0
) -> Iterator[str]:
    """Serve `handler` on a free loopback port and yield its base URL (no
    trailing slash), with the scraper allowed to fetch private addresses and
    `timeout` as its request timeout."""
    settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES = True
    settings.SCRAPER_REQUEST_TIMEOUT = timeout
    # The crawl's threads touch the ORM while pytest-django's loop is around.
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with serve_loopback(handler) as url:
            yield url
    finally:
        # As it was: a browser test around this one still needs it set.
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@contextlib.contextmanager
def serve_loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free loopback port from a thread; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
