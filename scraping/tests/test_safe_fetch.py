"""SafeFetcher against a real HTTP server on 127.0.0.1.

No test sends traffic anywhere but 127.0.0.1: hostile literals only go through
check_url / check_address, and fetch() is only given hostile URLs that the guard
refuses before dialling or that spell 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from django.conf import settings
from multidict import CIMultiDict, CIMultiDictProxy

from scraping.safe_fetch import (
    ROBOTS_DISALLOWED,
    BlockedURL,
    FetchError,
    FetchSkipped,
    SafeFetcher,
    _retry_after_seconds,
    _x_robots_opt_out,
    check_address,
    check_url,
    resolve_checked,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
ROBOTS = "User-agent: *\nDisallow: /private/\nCrawl-delay: 0.5\n"


@dataclass
class Hit:
    path: str
    at: float
    headers: dict[str, str]


@dataclass
class Site:
    """A local test site; `hits` logs every request the server received."""

    port: int
    robots_status: int = 200
    hits: list[Hit] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [hit.path for hit in self.hits]


class Handler(BaseHTTPRequestHandler):
    site: Site

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
        pass

    def do_GET(self) -> None:
        site = self.server.site  # type: ignore[attr-defined]
        with site.lock:
            site.hits.append(Hit(self.path, time.monotonic(), dict(self.headers)))
        path, _, query = self.path.partition("?")
        route = ROUTES.get(path) or ROUTES.get(path.rsplit("/", 1)[0] + "/*")
        if route is None:
            self.answer(404, b"not found")
        else:
            route(self, site, path, parse_qs(query))

    def answer(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "text/html",
        **headers: str,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)


def robots(handler: Handler, site: Site, path: str, query: Any) -> None:
    handler.answer(site.robots_status, ROBOTS.encode(), "text/plain")


def page(handler: Handler, site: Site, path: str, query: Any) -> None:
    handler.answer(200, b"<html><body><h1>hello</h1></body></html>")


def image(handler: Handler, site: Site, path: str, query: Any) -> None:
    # /tagged?x=<X-Robots-Tag value>
    tag = {"X_Robots_Tag": query["x"][0]} if "x" in query else {}
    handler.answer(200, PNG, "image/png", **tag)


def redirect_to(location: str) -> Callable[..., None]:
    def route(handler: Handler, site: Site, path: str, query: Any) -> None:
        handler.answer(302, Location=location)

    return route


def chain(handler: Handler, site: Site, path: str, query: Any) -> None:
    left = int(path.rsplit("/", 1)[1])
    if left == 0:
        handler.answer(200, b"end of chain")
    else:
        handler.answer(302, Location=f"/chain/{left - 1}")


def flaky(handler: Handler, site: Site, path: str, query: Any) -> None:
    # 503 with Retry-After: 1 the first time each key is asked for, then 200.
    key = query["key"][0]
    with site.lock:
        site.counters[key] = site.counters.get(key, 0) + 1
        first = site.counters[key] == 1
    if first:
        handler.answer(503, b"busy", Retry_After="1")
    else:
        handler.answer(200, b"recovered")


def busy(handler: Handler, site: Site, path: str, query: Any) -> None:
    handler.answer(429, b"slow down", Retry_After="0")


def huge(handler: Handler, site: Site, path: str, query: Any) -> None:
    # No Content-Length: only the streaming cap can stop this one.
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.end_headers()
    with contextlib.suppress(OSError):  # the client hangs up at the cap
        for _ in range(64):
            handler.wfile.write(b"\0" * 65536)


def hang(handler: Handler, site: Site, path: str, query: Any) -> None:
    time.sleep(3)  # accepts the connection, never answers in time


def slow(handler: Handler, site: Site, path: str, query: Any) -> None:
    with site.lock:
        site.in_flight += 1
        site.max_in_flight = max(site.max_in_flight, site.in_flight)
    time.sleep(0.2)
    with site.lock:
        site.in_flight -= 1
    handler.answer(200, b"slow")


ROUTES: dict[str, Callable[..., None]] = {
    "/robots.txt": robots,
    "/page": page,
    "/image": image,
    "/tagged": image,
    "/private/secret": page,
    "/to-private": redirect_to("/private/secret"),
    "/to-metadata": redirect_to("http://169.254.169.254/latest/meta-data/"),
    "/to-file": redirect_to("file:///etc/passwd"),
    "/chain/*": chain,
    "/flaky": flaky,
    "/busy": busy,
    "/gone": lambda handler, *_: handler.answer(404, b"gone"),
    "/huge": huge,
    "/hang": hang,
    "/slow": slow,
}


@contextlib.contextmanager
def serve(**options: Any) -> Iterator[Site]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True  # /hang must not hold up shutdown
    server.site = Site(port=server.server_address[1], **options)  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server.site  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def shared_site() -> Iterator[Site]:
    with serve() as site:
        yield site


@pytest.fixture
def site(shared_site: Site) -> Site:
    shared_site.hits.clear()
    shared_site.max_in_flight = 0
    return shared_site


def make_fetcher(**overrides: Any) -> SafeFetcher:
    options: dict[str, Any] = {
        "allow_private": True,
        "politeness_delay": 0,
        "respect_robots": False,
        "timeout": 2.0,
    }
    return SafeFetcher(**(options | overrides))


def fetch(url: str, *, purpose: str = "page", **overrides: Any) -> Any:
    async def run() -> Any:
        async with make_fetcher(**overrides) as fetcher:
            return await fetcher.fetch(url, purpose=purpose)

    return asyncio.run(run())


# --- Address policy -----------------------------------------------------------------

HOSTILE_URLS = [
    "http://127.0.0.1/",
    "http://localhost/",
    "http://LocalHost./",
    "http://app.localhost/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://0x7f.1/",
    "http://127.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://169.254.169.254/",
    "http://0xa9fea9fe/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::1]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fc00::1]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://255.255.255.255/",
    "http://192.0.2.1/",
    "http://198.18.0.1/",
    "http://240.0.0.1/",
    "http://user@127.0.0.1:8000/",
    "http://256.0.0.1/",
    "ftp://example.com/",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "data:text/html,hi",
    "http:///nohost",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_check_url_refuses_hostile_urls(url: str) -> None:
    with pytest.raises(BlockedURL):
        check_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
        "http://[::]/",
        "gopher://127.0.0.1/",
    ],
)
def test_metadata_multicast_and_unspecified_stay_blocked_with_allow_private(
    url: str,
) -> None:
    with pytest.raises(BlockedURL):
        check_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a.jpg",
        "http://8.8.8.8/",
        "http://[2606:4700:4700::1111]/",
        "http://[::ffff:8.8.8.8]/",
        "http://xn--nxasmq6b.com/",
    ],
)
def test_check_url_allows_public_urls(url: str) -> None:
    check_url(url, allow_private=False)


@pytest.mark.parametrize(
    ("ip", "public", "with_allow_private"),
    [
        ("8.8.8.8", True, True),
        ("2606:4700::1111", True, True),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("10.1.2.3", False, True),
        ("fd12::1", False, True),
        ("100.64.0.1", False, True),
        ("::ffff:10.0.0.1", False, True),
        ("169.254.169.254", False, False),
        ("fe80::1", False, False),
        ("::ffff:169.254.169.254", False, False),
        ("::ffff:0:a9fe:a9fe", False, False),  # SIIT-translated
        ("::a9fe:a9fe", False, False),  # v4-compatible
        ("64:ff9b::a9fe:a9fe", False, False),  # NAT64
        ("2002:a9fe:a9fe::", False, False),  # 6to4
        ("2002:7f00:1::", False, True),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False, False),  # Teredo
        ("192.0.0.8", False, False),
        ("fec0::1", False, False),
        ("ff0e::1", False, False),
        ("2001:db8::1", False, False),
        ("0.0.0.0", False, False),
        ("not-an-ip", False, False),
    ],
)
def test_check_address(ip: str, public: bool, with_allow_private: bool) -> None:
    for allow_private, allowed in ((False, public), (True, with_allow_private)):
        if allowed:
            check_address(ip, allow_private=allow_private)
        else:
            with pytest.raises(BlockedURL):
                check_address(ip, allow_private=allow_private)


def test_resolve_checked_refuses_loopback_names_unless_private_allowed() -> None:
    with pytest.raises(BlockedURL):
        resolve_checked("localhost", 80, allow_private=False)
    with pytest.raises(BlockedURL):
        resolve_checked("2130706433", 80, allow_private=False)
    addresses = resolve_checked("localhost", 80, allow_private=True)
    assert addresses
    assert {a for a in addresses if a not in ("127.0.0.1", "::1")} == set()


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names that our fake DNS answers, as a rebinding attacker's DNS would."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return [
                info
                for address in answers[host]
                for info in real(address, port, *args, **kwargs)
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_resolve_checked_refuses_a_name_if_any_record_is_unsafe(
    rebinding_dns: dict[str, list[str]],
) -> None:
    rebinding_dns["mixed.test"] = ["127.0.0.1", "::1"]
    with pytest.raises(BlockedURL, match="mixed.test resolves to"):
        resolve_checked("mixed.test", 80, allow_private=False)
    assert resolve_checked("mixed.test", 80, allow_private=True) == [
        "127.0.0.1",
        "::1",
    ]


def test_connect_time_guard_refuses_a_name_resolving_to_loopback(
    site: Site, rebinding_dns: dict[str, list[str]]
) -> None:
    # check_url passes an innocent-looking name; only the connect-time check sees
    # the address it resolves to, and refuses before dialling.
    rebinding_dns["rebind.test"] = ["127.0.0.1"]
    url = f"http://rebind.test:{site.port}/page"
    check_url(url, allow_private=False)
    with pytest.raises(BlockedURL, match="rebind.test resolves to 127.0.0.1"):
        fetch(url, allow_private=False)
    assert site.hits == []

    result = fetch(url, allow_private=True)  # dials the checked IP, Host stays the name
    assert result.status == 200
    assert site.hits[0].headers["Host"] == f"rebind.test:{site.port}"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "2130706433", "0x7f.0.0.1", "0x7f.1", "127.1", "localhost"]
)
def test_fetch_refuses_loopback_spellings_without_allow_private(
    site: Site, host: str
) -> None:
    with pytest.raises(BlockedURL):
        fetch(f"http://{host}:{site.port}/page", allow_private=False)
    with pytest.raises(BlockedURL):
        fetch(
            f"http://{host}:{site.port}/page", allow_private=False, respect_robots=True
        )
    assert site.hits == []
    # Allowed, each spelling reaches the same server: the check and the connection
    # read the host the same way.
    assert fetch(f"http://{host}:{site.port}/page").content.startswith(b"<html>")


# --- Fetching -----------------------------------------------------------------------


def test_fetch_page_and_image(site: Site) -> None:
    result = fetch(site.url("/page"))
    assert result.url == site.url("/page")
    assert result.status == 200
    assert result.content == b"<html><body><h1>hello</h1></body></html>"
    assert result.headers["content-type"] == "text/html"
    assert result.redirects == []
    assert result.elapsed_ms >= 0

    image = fetch(site.url("/image"), purpose="image")
    assert image.content == PNG
    assert [hit.headers["User-Agent"] for hit in site.hits] == [
        settings.SCRAPER_USER_AGENT,
        settings.SCRAPER_USER_AGENT,
    ]
    assert settings.SCRAPER_USER_AGENT.startswith("ImagineerBot/")


def test_redirect_chain_is_followed_and_recorded(site: Site) -> None:
    result = fetch(site.url("/chain/3"))
    assert result.url == site.url("/chain/0")
    assert result.content == b"end of chain"
    assert result.redirects == [site.url(f"/chain/{n}") for n in (3, 2, 1)]


def test_too_many_redirects(site: Site) -> None:
    with pytest.raises(FetchError, match="more than 2 redirects"):
        fetch(site.url("/chain/3"), max_redirects=2)
    assert site.paths() == ["/chain/3", "/chain/2", "/chain/1"]


@pytest.mark.parametrize("path", ["/to-metadata", "/to-file"])
def test_redirect_to_metadata_is_blocked_even_with_allow_private(
    site: Site, path: str
) -> None:
    with pytest.raises(BlockedURL):
        fetch(site.url(path))
    assert site.paths() == [path]


def test_robots_txt_is_obeyed_and_read_once(site: Site) -> None:
    async def run() -> tuple[bool, bool, float | None]:
        async with make_fetcher(respect_robots=True) as fetcher:
            with pytest.raises(FetchSkipped) as skipped:
                await fetcher.fetch(site.url("/private/secret"))
            assert skipped.value.reason == ROBOTS_DISALLOWED
            with pytest.raises(FetchSkipped):  # a redirect hop is checked too
                await fetcher.fetch(site.url("/to-private"))
            await asyncio.gather(*(fetcher.fetch(site.url("/page")) for _ in range(2)))
            return (
                await fetcher.robots_allows(site.url("/page")),
                await fetcher.robots_allows(site.url("/private/x")),
                fetcher.crawl_delay(site.url("/page")),
            )

    assert asyncio.run(run()) == (True, False, 0.5)
    assert site.paths() == ["/robots.txt", "/to-private", "/page", "/page"]
    # Crawl-delay 0.5 spaces requests even though politeness_delay is 0. The
    # server sees each start late by however long it took to arrive (as in the
    # politeness test: a busy machine skews it by up to ~0.1 s); unspaced, the
    # gap is about 0.
    pages = [hit.at for hit in site.hits if hit.path == "/page"]
    assert pages[1] - pages[0] >= 0.5 - 0.3


@pytest.mark.parametrize(
    ("robots_status", "allowed"), [(404, True), (403, True), (500, False), (429, False)]
)
def test_robots_txt_errors(robots_status: int, allowed: bool) -> None:
    with serve(robots_status=robots_status) as site:
        if allowed:
            assert fetch(site.url("/private/secret"), respect_robots=True).status == 200
        else:
            with pytest.raises(FetchSkipped, match="robots"):
                fetch(site.url("/page"), respect_robots=True)
        assert site.paths() == ["/robots.txt"] + (
            ["/private/secret"] if allowed else []
        )


def test_unreachable_robots_txt_disallows_the_host() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def run() -> bool:
        async with make_fetcher(respect_robots=True) as fetcher:
            return await fetcher.robots_allows(f"http://127.0.0.1:{port}/page")

    assert asyncio.run(run()) is False


def test_retry_after_is_honoured(site: Site) -> None:
    result = fetch(site.url("/flaky?key=retry-after"))
    assert result.content == b"recovered"
    first, second = (hit.at for hit in site.hits)
    assert second - first >= 1.0 - 0.02


def test_429_gives_up_after_retries(site: Site) -> None:
    with pytest.raises(FetchError) as error:
        fetch(site.url("/busy"), retries=1)
    assert error.value.status == 429
    assert site.paths() == ["/busy", "/busy"]


def test_404_is_not_retried(site: Site) -> None:
    with pytest.raises(FetchError) as error:
        fetch(site.url("/gone"))
    assert error.value.status == 404
    assert site.paths() == ["/gone"]


def test_connection_refused_is_retried_then_fails() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError, match="network error") as error:
        fetch(f"http://127.0.0.1:{port}/", retries=1)
    assert error.value.status is None


def test_byte_cap(site: Site) -> None:
    with pytest.raises(FetchSkipped) as skipped:
        fetch(site.url("/huge"), max_bytes=1024 * 1024)
    assert skipped.value.reason == "too large"
    assert fetch(site.url("/image"), max_bytes=len(PNG)).content == PNG
    with pytest.raises(FetchSkipped, match="too large"):  # by Content-Length
        fetch(site.url("/image"), max_bytes=len(PNG) - 1)


def test_a_server_that_never_answers_fails_within_the_timeout(site: Site) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch(site.url("/hang"), timeout=0.5, retries=2)
    assert time.monotonic() - started < 1.5
    assert site.paths() == ["/hang"]  # a timeout is not retried


def test_politeness_delay_spaces_requests_to_a_host(site: Site) -> None:
    async def run() -> None:
        async with make_fetcher(politeness_delay=1.0) as fetcher:
            await asyncio.gather(*(fetcher.fetch(site.url("/page")) for _ in range(2)))

    asyncio.run(run())
    first, second = (hit.at for hit in site.hits)
    # The fetcher spaces request starts; the server sees them later by however
    # long each took to arrive (a new connection, a busy machine: CI measured
    # 80 ms of skew), so the margin is wide. Unspaced, the gap is about 0.
    assert second - first >= 1.0 - 0.3


def test_per_host_concurrency(site: Site) -> None:
    async def run() -> None:
        async with make_fetcher(per_host_concurrency=2) as fetcher:
            await asyncio.gather(*(fetcher.fetch(site.url("/slow")) for _ in range(5)))

    asyncio.run(run())
    assert len(site.hits) == 5
    assert site.max_in_flight == 2


@pytest.mark.parametrize(
    ("tag", "skipped"),
    [
        ("noai", "noai"),
        ("noindex, nofollow", "noindex"),
        ("ImagineerBot: noimageai", "noimageai"),
        ("none", "none"),
        ("otherbot: noai", None),
        ("nofollow", None),
        ("unavailable_after: 25 Jun 2010 15:00:00 PST", None),
    ],
)
def test_x_robots_tag_opt_out_for_images(site: Site, tag: str, skipped: str) -> None:
    url = site.url("/tagged?" + urlencode({"x": tag}))
    if skipped is None:
        assert fetch(url, purpose="image").content == PNG
    else:
        with pytest.raises(FetchSkipped) as error:
            fetch(url, purpose="image")
        assert error.value.reason == f"x-robots-tag {skipped}"
    # Pages are not images: the opt-out does not apply to them.
    assert fetch(url).content == PNG


def test_x_robots_opt_out_reads_every_header_value() -> None:
    headers = CIMultiDictProxy(
        CIMultiDict(
            [("X-Robots-Tag", "otherbot: noai"), ("X-Robots-Tag", "noimageindex")]
        )
    )
    assert _x_robots_opt_out(headers, "ImagineerBot") == "noimageindex"


def test_retry_after_parsing() -> None:
    assert _retry_after_seconds("5") == 5.0
    assert _retry_after_seconds(None) is None
    assert _retry_after_seconds("soon") is None
    in_ten = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 8 <= (_retry_after_seconds(in_ten) or 0) <= 10
    past = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
    assert _retry_after_seconds(past) == 0.0
