"""A local HTTP proxy that is the rendering browser's only way out.

Chromium is launched with this proxy for every scheme and nothing bypassing it
(loopback included), so it never opens a connection of its own: it asks the proxy,
which resolves the host itself, checks every address with the scraper's policy
(`safe_fetch.resolve_checked`, or whatever `resolve` the caller passes) and only
then dials the checked address. A refused target gets a 403 before any connection
is made, so even a bare TCP handshake to a refused address cannot happen, and a
host that rebinds between a check and a connect dials only what was checked.

It speaks just what browsers send to an HTTP proxy: CONNECT (https, ws, wss, and
Playwright's own fetches) and absolute-form requests for plain http.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import socketserver
import threading
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit

from scraping.safe_fetch import BlockedURL

logger = logging.getLogger(__name__)

# (host, port) -> the addresses that may be dialled; raises BlockedURL to refuse,
# OSError when the name does not resolve.
Resolver = Callable[[str, int], list[str]]

MAX_HEAD_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 30.0  # a tunnel quiet this long is closed
# On the proxy's own answers ("refused", "unreachable"), so a client that shows a
# failed CONNECT as a response (Playwright's fetch does) can tell it from the
# origin's.
EGRESS_HEADER = "X-Imagineer-Egress"
# Hop-by-hop headers (RFC 9110 7.6.1) and the proxy's own: not sent upstream.
_HOP_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"upgrade",
    }
)


class EgressProxy:
    """Run with `with EgressProxy(resolve) as proxy:`; point the browser at
    `proxy.server`. `refused` lists (authority, reason) for every refusal."""

    def __init__(self, resolve: Resolver, *, connect_timeout: float = 10.0) -> None:
        self.resolve = resolve
        self.connect_timeout = connect_timeout
        self.refused: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._server = _Server(self)
        # A short poll: closing waits for the serving loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="egress-proxy",
            daemon=True,
        )

    @property
    def server(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> EgressProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:  # end tunnels still open, so their threads return
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def track(self, sock: socket.socket, *, opened: bool) -> None:
        with self._lock:
            if opened:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def dial(self, host: str, port: int) -> socket.socket:
        """A connection to `host:port` on an address the policy allows.

        Raises BlockedURL when refused, OSError when it cannot be reached.
        """
        target = authority(host, port)
        try:
            addresses = self.resolve(host, port)
        except BlockedURL as exc:
            self._refuse(target, exc.reason)
            raise
        except OSError:
            raise
        except Exception as exc:  # fail closed on a policy that breaks
            logger.exception("egress proxy: the policy failed on %s", target)
            self._refuse(target, "address check failed")
            raise BlockedURL("address check failed") from exc
        last_error: OSError = OSError(f"no address for {host}")
        for address in addresses:
            try:
                return socket.create_connection(
                    (address, port), timeout=self.connect_timeout
                )
            except OSError as exc:
                last_error = exc
        raise last_error

    def refusal(self, host: str, port: int) -> str | None:
        """Why `host:port` was refused, if it was."""
        target = authority(host, port)
        with self._lock:
            return next((why for t, why in self.refused if t == target), None)

    def _refuse(self, target: str, reason: str) -> None:
        logger.info("egress proxy: refused %s (%s)", target, reason)
        with self._lock:
            self.refused.append((target, reason))


def authority(host: str, port: int) -> str:
    """host:port as a URL writes it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, proxy: EgressProxy) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy

    def handle_error(self, request: object, client_address: object) -> None:
        # To the log, not socketserver's print to stderr; the connection is closed.
        logger.exception("egress proxy: a connection failed")


class _Handler(socketserver.BaseRequestHandler):
    server: _Server
    request: socket.socket

    def handle(self) -> None:
        proxy = self.server.proxy
        self.request.settimeout(IDLE_TIMEOUT_S)
        proxy.track(self.request, opened=True)
        try:
            self._serve(proxy)
        except OSError as exc:
            logger.debug("egress proxy: connection ended: %s", exc)
        finally:
            proxy.track(self.request, opened=False)

    def _serve(self, proxy: EgressProxy) -> None:
        head, rest = _read_head(self.request)
        if head is None:
            return self._reply(400, "request head too large or incomplete")
        request_line, _, header_block = head.partition(b"\r\n")
        parts = request_line.decode("latin-1").split(" ")
        if len(parts) != 3:
            return self._reply(400, "bad request line")
        method, target, version = parts
        destination = _destination(method, target)
        if destination is None:
            return self._reply(400, "only CONNECT and absolute http:// requests")
        host, port = destination
        try:
            upstream = proxy.dial(host, port)
        except BlockedURL:
            return self._reply(403, "refused by the scraper's egress policy")
        except OSError:
            return self._reply(502, "cannot connect")
        proxy.track(upstream, opened=True)
        try:
            upstream.settimeout(IDLE_TIMEOUT_S)
            if method == "CONNECT":
                self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                where = urlsplit(target)
                path = where.path or "/"
                if where.query:
                    path = f"{path}?{where.query}"
                line = f"{method} {path} {version}\r\n".encode("latin-1")
                upstream.sendall(line + _forward_headers(header_block))
            if rest:
                upstream.sendall(rest)
            _pipe(self.request, upstream)
        finally:
            proxy.track(upstream, opened=False)
            upstream.close()

    def _reply(self, status: int, message: str) -> None:
        phrase = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
        # The page may see this answer: no reason that would tell it what its
        # host resolves to.
        verdict = {403: "refused", 502: "unreachable"}.get(status)
        marker = f"{EGRESS_HEADER}: {verdict}\r\n" if verdict else ""
        body = f"{message}\n".encode()
        self.request.sendall(
            f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\n{marker}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    """The request head (without its blank line) and whatever followed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD_BYTES:
            return None, b""
        chunk = sock.recv(16384)
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _destination(method: str, target: str) -> tuple[str, int] | None:
    """Where a request asks to go: CONNECT's host:port, or an absolute http URL."""
    if method == "CONNECT":
        parsed, default_port = urlsplit(f"//{target}"), None
    else:
        parsed, default_port = urlsplit(target), 80
        if parsed.scheme != "http":
            return None
    try:
        port = parsed.port or default_port
    except ValueError:  # not a number, or out of range
        return None
    if not parsed.hostname or port is None:
        return None
    return parsed.hostname, port


def _forward_headers(header_block: bytes) -> bytes:
    """The client's headers less the hop-by-hop ones, and one request per
    connection: a browser may reuse a proxy connection for another host, which
    must be dialled (and checked) anew."""
    kept = [
        line
        for line in header_block.split(b"\r\n")
        if line and line.split(b":", 1)[0].strip().lower() not in _HOP_HEADERS
    ]
    kept.append(b"Connection: close")
    return b"".join(line + b"\r\n" for line in kept) + b"\r\n"


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until both sides are done (or one fails)."""
    selector = selectors.DefaultSelector()
    selector.register(client, selectors.EVENT_READ, upstream)
    selector.register(upstream, selectors.EVENT_READ, client)
    with selector:
        while selector.get_map():
            events = selector.select(timeout=IDLE_TIMEOUT_S)
            if not events:
                return
            for key, _ in events:
                source, sink = key.fileobj, key.data
                data = source.recv(65536)  # type: ignore[union-attr]
                if not data:
                    selector.unregister(source)
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    continue
                sink.sendall(data)
