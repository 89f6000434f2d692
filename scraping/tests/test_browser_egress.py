"""The rendering browser cannot connect to a refused address, not even for a bare
TCP handshake, whatever route a hostile page tries.

The canary is a set of raw TCP listeners (and one UDP socket) on 127.0.0.2, an
address the test's policy refuses, counting accepts and datagrams: an HTTP log
would miss a connection that sends nothing (a preconnect, a navigation aborted
after connecting, a STUN probe). The page itself comes from 127.0.0.1, which the
policy allows, like SCRAPER_ALLOW_PRIVATE_ADDRESSES does for loopback.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from imagineer_project.testing import make_image_bytes, require_chromium, site
from scraping.egress_proxy import EgressProxy
from scraping.render import RenderError, RenderResult, render_page
from scraping.safe_fetch import BlockedURL, check_url, resolve_checked

pytestmark = pytest.mark.browser

CANARY_HOST = "127.0.0.2"
PAGE_ROUTES = (
    "iframe",
    "preconnect",
    "image redirect",
    "fetch",
    "eventsource",
    "websocket",
    "worker fetch",
    "worker websocket",
    "webrtc turn tcp",
)
TOP_LEVEL_ROUTES = ("meta refresh", "location", "form submit", "redirect")


def refused_canary(host: str, port: int) -> list[str]:
    """The proxy's policy here: safe_fetch's, loopback allowed, the canary not."""
    addresses = resolve_checked(host, port, allow_private=True)
    if CANARY_HOST in addresses:
        raise BlockedURL(f"{host} is the refused canary")
    return addresses


def guard(url: str) -> str | None:
    """The route check, as scraping.runs builds it, on the same policy."""
    try:
        check_url(url, allow_private=True)
        parts = urlsplit(url)
        if parts.hostname:
            refused_canary(parts.hostname, parts.port or 80)
    except BlockedURL as exc:
        return exc.reason
    except OSError as exc:
        return f"cannot resolve: {exc}"
    return None


class Canary:
    """TCP listeners (one per route) and a UDP socket on the refused address."""

    def __init__(self, routes: tuple[str, ...]) -> None:
        self.accepts = dict.fromkeys(routes, 0)
        self.datagrams = 0
        self._sockets: list[socket.socket] = []
        self.ports: dict[str, int] = {}
        for route in routes:
            listener = socket.create_server((CANARY_HOST, 0), backlog=64)
            self.ports[route] = listener.getsockname()[1]
            self._start(self._accept, listener, route)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((CANARY_HOST, 0))
        self.udp_port = udp.getsockname()[1]
        self._start(self._receive, udp)

    def url(self, route: str, scheme: str = "http") -> str:
        return f"{scheme}://{CANARY_HOST}:{self.ports[route]}/canary"

    def _start(self, target: Callable[..., None], sock: socket.socket, *args) -> None:
        self._sockets.append(sock)
        threading.Thread(target=target, args=(sock, *args), daemon=True).start()

    def _accept(self, listener: socket.socket, route: str) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed at teardown
                return
            self.accepts[route] += 1
            connection.close()

    def _receive(self, udp: socket.socket) -> None:
        while True:
            try:
                udp.recvfrom(65536)
            except OSError:
                return
            self.datagrams += 1

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def hostile_page(canary: Canary) -> str:
    """One page trying every subresource route to the canary at once."""
    c = canary
    worker = (
        f"fetch('{c.url('worker fetch')}').catch(() => {{}});"
        f"try {{ new WebSocket('{c.url('worker websocket', 'ws')}'); }} catch (e) {{}}"
    )
    return f"""<!doctype html>
<html><head><title>Hostile</title>
<link rel="preconnect" href="{c.url("preconnect")}">
</head><body>
<img src="/img/allowed.png" alt="Allowed">
<img src="/redirect-to-canary" alt="Redirects to the canary">
<iframe src="{c.url("iframe")}"></iframe>
<script>
fetch("{c.url("fetch")}").catch(() => {{}});
try {{ new EventSource("{c.url("eventsource")}"); }} catch (e) {{}}
try {{ new WebSocket("{c.url("websocket", "ws")}"); }} catch (e) {{}}
const blob = new Blob([`{worker}`], {{type: "text/javascript"}});
try {{ new Worker(URL.createObjectURL(blob)); }} catch (e) {{}}
function probe(PeerConnection) {{
  const pc = new PeerConnection({{iceServers: [
    {{urls: "stun:{CANARY_HOST}:{c.udp_port}"}},
    {{urls: "turn:{CANARY_HOST}:{c.udp_port}?transport=udp",
      username: "u", credential: "p"}},
    {{urls: "turn:{CANARY_HOST}:{c.ports["webrtc turn tcp"]}?transport=tcp",
      username: "u", credential: "p"}},
  ]}});
  pc.createDataChannel("probe");
  pc.createOffer().then(offer => pc.setLocalDescription(offer));
}}
try {{ probe(RTCPeerConnection); }} catch (e) {{}}
// A fresh frame's constructor, taken before any script could run in it.
const frame = document.createElement("iframe");
document.body.append(frame);
try {{ probe(frame.contentWindow.RTCPeerConnection); }} catch (e) {{}}
document.body.dataset.ran = "yes";
</script>
</body></html>"""


def top_level_page(route: str, target: str) -> str:
    body = {
        "meta refresh": f'<meta http-equiv="refresh" content="0;url={target}">',
        "location": f"<script>location = '{target}';</script>",
        "form submit": (
            f'<form method="post" action="{target}"><input name="q" value="1">'
            "</form><script>document.forms[0].submit();</script>"
        ),
    }[route]
    return f"<!doctype html><html><head><title>Away</title></head><body>{body}</body>"


class SiteHandler(site.SiteHandler):
    server: SiteServer

    def do_GET(self) -> None:
        canary = self.server.canary
        if self.path == "/hostile":
            self.answer(hostile_page(canary).encode(), "text/html")
        elif self.path == "/redirect-to-canary":
            self.redirect(canary.url("image redirect"))
        elif self.path == "/away/redirect":
            self.redirect(canary.url("redirect"))
        elif self.path.startswith("/away/"):
            route = self.path.removeprefix("/away/").replace("-", " ")
            page = top_level_page(route, canary.url(route))
            self.answer(page.encode(), "text/html")
        elif self.path == "/img/allowed.png":
            self.answer(make_image_bytes("PNG", (64, 64), seed=2), "image/png")
        else:
            self.send_error(404)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


class SiteServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, canary: Canary) -> None:
        super().__init__(("127.0.0.1", 0), SiteHandler)
        self.canary = canary


@pytest.fixture
def chromium() -> str:
    return require_chromium()


@contextlib.contextmanager
def serving(routes: tuple[str, ...]) -> Iterator[tuple[str, Canary]]:
    canary = Canary(routes)
    server = SiteServer(canary)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", canary
    finally:
        server.shutdown()
        server.server_close()
        canary.close()


def render(url: str, **options: object) -> RenderResult | None:
    try:
        return render_page(url, guard=guard, resolve=refused_canary, **options)
    except RenderError:  # a page that navigates away may fail to render
        return None


def settled(canary: Canary) -> dict[str, int]:
    time.sleep(0.3)  # let the accept threads count the last connections
    return dict(canary.accepts, **{"webrtc udp datagrams": canary.datagrams})


def test_a_hostile_page_opens_no_connection_to_a_refused_address(
    chromium: str,
) -> None:
    with serving(PAGE_ROUTES) as (site, canary):
        result = render(f"{site}/hostile", timeout=15, scroll_steps=2)

        counts = settled(canary)
    assert counts == dict.fromkeys(counts, 0)
    # The page did render, and its allowed image came through the proxy.
    assert result is not None
    assert 'data-ran="yes"' in result.html
    assert f"{site}/img/allowed.png" not in result.blocked
    assert canary.url("fetch") in result.blocked  # refused by the route check
    # Routes never see a worker's WebSocket: the proxy refused its connection.
    worker_socket = f"tcp://{CANARY_HOST}:{canary.ports['worker websocket']}"
    assert worker_socket in result.blocked


@pytest.mark.parametrize("route", TOP_LEVEL_ROUTES)
def test_a_top_level_navigation_to_a_refused_address_never_connects(
    chromium: str, route: str
) -> None:
    with serving((route,)) as (site, canary):
        render(f"{site}/away/{route.replace(' ', '-')}", timeout=8, scroll_steps=1)

        counts = settled(canary)
    assert counts == dict.fromkeys(counts, 0)


def ask(proxy: EgressProxy, request: bytes) -> bytes:
    """Send one raw request to the proxy; everything it answers until it closes."""
    host, port = proxy.server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


def test_the_proxy_forwards_allowed_requests_and_refuses_before_connecting() -> None:
    with serving(("connect", "forward")) as (site, canary):
        port = site.rsplit(":", 1)[1]
        with EgressProxy(refused_canary) as proxy:
            forwarded = ask(
                proxy,
                f"GET {site}/img/allowed.png HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Proxy-Connection: keep-alive\r\n\r\n".encode(),
            )
            refused = [
                ask(
                    proxy,
                    f"CONNECT {CANARY_HOST}:{canary.ports['connect']} "
                    "HTTP/1.1\r\n\r\n".encode(),
                ),
                ask(proxy, f"GET {canary.url('forward')} HTTP/1.1\r\n\r\n".encode()),
            ]
            malformed = ask(proxy, b"GET /relative HTTP/1.1\r\n\r\n")
            refusals = list(proxy.refused)

        counts = settled(canary)
    assert forwarded.startswith(b"HTTP/1.0 200 ")
    assert forwarded.endswith(make_image_bytes("PNG", (64, 64), seed=2))
    assert [answer.split(b"\r\n", 1)[0] for answer in refused] == [
        b"HTTP/1.1 403 Forbidden"
    ] * 2
    assert all(b"X-Imagineer-Egress: refused" in answer for answer in refused)
    assert malformed.startswith(b"HTTP/1.1 400 ")
    assert refusals == [
        (f"{CANARY_HOST}:{canary.ports[route]}", f"{CANARY_HOST} is the refused canary")
        for route in ("connect", "forward")
    ]
    assert counts == dict.fromkeys(counts, 0)
