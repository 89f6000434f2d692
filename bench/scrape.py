"""Benchmark: image download throughput through the guarded fetcher, and
download + ingest, from a local server with politeness off.

Run by hand or by `make bench`; prints figures, asserts nothing. Target from the
scraping issue: >= 1,000 images/s fetched on 2 cores. The local server shares the
same 2 cores, so the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Images(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real image host
    disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs
    payloads: list[bytes] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        index = int(self.path.rsplit("/", 1)[-1].split(".")[0])
        body = self.payloads[index % len(self.payloads)]
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    # http.server listens with a backlog of 5: at concurrency 16 and more the
    # kernel dropped connection attempts, and the clients waited out SYN
    # retransmits (1 s, 3 s, ...) or timed out: the old figures' "fall" past
    # concurrency 8 was this server's, not the fetcher's.
    request_queue_size = 256


def _serve_forever(server: ThreadingHTTPServer) -> None:
    server.serve_forever()


def serve() -> str:
    """The image server runs in its own process, so it does not share the
    client's GIL (a same-process server halves the measured rate)."""
    import multiprocessing

    server = Server(("127.0.0.1", 0), Images)
    server.daemon_threads = True
    process = multiprocessing.get_context("fork").Process(
        target=_serve_forever, args=(server,), daemon=True
    )
    process.start()
    server.socket.close()  # the child keeps its copy of the listening socket
    return f"http://127.0.0.1:{server.server_address[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--ingest", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagineer-bench-") as tmp:
        os.environ["IMAGINEER_VAR_DIR"] = tmp
        os.environ.pop("DATABASE_URL", None)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagineer_project.settings")
        import django

        django.setup()
        from imagineer_project.testing import make_image_bytes

        Images.payloads = [
            make_image_bytes("JPEG", (640, 480), seed=n) for n in range(50)
        ]
        size_kib = sum(map(len, Images.payloads)) / len(Images.payloads) / 1024
        base = serve()
        print(f"{os.cpu_count()} CPU(s); {size_kib:.0f} KiB JPEGs from a local server")
        print(
            "\n== Download through SafeFetcher (SSRF guard on, politeness off), "
            "against a bare aiohttp loop on the same server =="
        )
        # The server is one threaded http.server process, so the figures are
        # a floor (bench/download.py measures against a server that keeps up).
        from download import bare_aiohttp, guarded, guarded_bodies, rate

        print("  concurrency  bare aiohttp/s  SafeFetcher/s  ratio")
        for concurrency in (2, 4, 8, 16, 64):
            bare = rate(bare_aiohttp, base, args.count, concurrency)
            ours = rate(guarded, base, args.count, concurrency)
            print(
                f"  {concurrency:>11}  {bare:>14.0f}  {ours:>13.0f}  {ours / bare:5.2f}"
            )

        print("\n== Download + inspect (sanitise, decode, hash, thumbnail) ==")
        from albums.ingest import inspect_image

        start = time.perf_counter()
        bodies = asyncio.run(guarded_bodies(base, args.ingest, 16))
        for body in bodies:
            inspect_image(body)
        elapsed = time.perf_counter() - start
        print(f"  {args.ingest / elapsed:.1f} images/s (one process)")


if __name__ == "__main__":
    main()
