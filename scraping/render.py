"""Render a page in headless Chromium, every request it makes checked by a guard.

Playwright's sync API: the worker and the management commands are synchronous.
Playwright is imported inside `render_page` only, so the web process never loads it.

Two layers keep the browser off refused addresses:
- Egress: Chromium's only way out is a local checking proxy (`egress_proxy`), for
  every scheme, loopback included, so Chromium never dials anything itself: the
  proxy resolves each host, checks every address with the same policy as the
  httpx guard and dials only a checked address. Navigations that Chromium starts
  before a route handler sees them, preconnects, WebSockets (from workers too) and
  DNS rebinding all end at the proxy. WebRTC is off: the RTCPeerConnection
  constructors are removed from every frame, and `--webrtc-ip-handling-policy=
  disable_non_proxied_udp` leaves ICE only TURN over TCP through the proxy (no STUN
  or TURN over UDP). Playwright's own fetches for the routes use the proxy too.
- Requests: a route handler checks every request with `guard`, and sees what it
  refused (for the crawl log). Interception alone leaves holes (perf-reliability
  B8); this is how each is handled here:
- Route handlers never see redirect hops: Chromium follows a redirect by itself,
  even one a handler fulfils. So the handler fetches every request itself with
  redirects off and walks the chain hop by hop through the guard. A main-frame
  navigation that redirects is aborted and navigated again to the next hop, so the
  page's URL (and the base of its relative links) stays right.
- Service workers could fetch past the routes: blocked.
- WebSockets are not routed like requests: refused with `route_web_socket`.
- DNS: the guard resolves a host, then the fetch resolves it again, so a host that
  rebinds in between would get through; so would preconnects and WebRTC. The egress
  proxy closes those.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from django.conf import settings

from imagineer_project.lib.chromium import CHROMIUM_ARGS, chromium_executable
from scraping.egress_proxy import EGRESS_HEADER, EgressProxy, Resolver, authority
from scraping.safe_fetch import resolve_checked

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 10
# A scraper needs neither; streaming ones would also hold a fetch open.
SKIPPED_RESOURCE_TYPES = frozenset({"media", "eventsource"})
QUIET_S = 0.5  # network idle: no request in flight for this long (as Playwright)
SCROLL_PAUSE_MS = 200

# No WebRTC at all: a scraper never needs it, and ICE would reach for STUN/TURN
# servers the page names. The flag leaves ICE only TURN/TCP through the proxy.
RENDER_ARGS = [
    *CHROMIUM_ARGS,
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
]
NO_WEBRTC_SCRIPT = """
for (const name of ["RTCPeerConnection", "webkitRTCPeerConnection"]) {
  delete globalThis[name];
}
"""

Guard = Callable[[str], str | None]


class RenderError(Exception):
    """The page could not be rendered; `reason` says why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class FailedRequest:
    url: str
    resource_type: str  # Playwright's: "image", "stylesheet", "script", ...
    reason: str  # "HTTP 404", or the network error


@dataclass(frozen=True)
class RenderResult:
    url: str  # final URL, after redirects
    html: str  # the document after its scripts ran
    # Request URLs refused (by the guard; WebSockets always), then tcp://host:port
    # for connections the egress proxy refused that no refused URL accounts for
    # (the proxy sees only where a connection goes, not what it is for).
    blocked: list[str]
    status: int | None = None  # HTTP status of the final document
    failed: list[FailedRequest] = field(default_factory=list)  # subresources


def render_page(
    url: str,
    *,
    guard: Guard,
    timeout: float = 30.0,
    scroll_steps: int = 6,
    executable_path: str | None = None,
    user_agent: str | None = None,
    resolve: Resolver | None = None,
) -> RenderResult:
    """Load `url` in Chromium, let scripts and lazy loading run, return the DOM.

    `guard(url)` returns None to allow a request or a reason to refuse it; it sees
    every request, redirect hop and WebSocket the page attempts. `resolve(host,
    port)` is the egress proxy's address policy: the addresses it may dial, or
    BlockedURL; by default safe_fetch's, under SCRAPER_ALLOW_PRIVATE_ADDRESSES.
    Browser start-up counts against `timeout`; only starting Playwright's driver
    (about half a second) comes on top.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    executable = executable_path or chromium_executable()
    if executable is None:
        raise RenderError(url, "no Chromium binary (apt-get install chromium)")
    session = _Session(guard, time.monotonic() + timeout)
    if session.refuse(url):  # before paying for a browser
        raise RenderError(url, f"refused: {session.refusals[url]}")
    if resolve is None:
        resolve = functools.partial(
            resolve_checked, allow_private=settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES
        )
    with EgressProxy(resolve) as proxy, sync_playwright() as playwright:
        session.proxy = proxy
        try:
            browser = playwright.chromium.launch(
                executable_path=executable,
                headless=True,
                args=RENDER_ARGS,
                # Explicitly nothing bypasses it: "<-loopback>" takes loopback out
                # of Chromium's implicit bypass list.
                proxy={"server": proxy.server, "bypass": "<-loopback>"},
                timeout=session.remaining_ms(),
            )
        except PlaywrightError as exc:
            reason = session.explain(exc)
            raise RenderError(url, f"{reason} starting Chromium") from exc
        try:
            context = browser.new_context(
                service_workers="block", accept_downloads=False, user_agent=user_agent
            )
            context.add_init_script(NO_WEBRTC_SCRIPT)
            context.route("**/*", session.handle)
            context.route_web_socket(lambda _url: True, session.refuse_websocket)
            page = context.new_page()
            session.watch(page)
            status = session.navigate(page, url)
            session.wait_for_idle(page)
            _scroll(page, session, scroll_steps)
            session.wait_for_idle(page)
            html = page.content()
            final_url = page.url
        except PlaywrightError as exc:
            raise RenderError(url, session.explain(exc)) from exc
        finally:
            browser.close()
    return RenderResult(
        url=final_url,
        html=html,
        blocked=session.blocked + _unaccounted(proxy.refused, session.blocked),
        status=status,
        failed=list(session.failed),
    )


def _unaccounted(refused: list[tuple[str, str]], blocked: list[str]) -> list[str]:
    """tcp://host:port of each proxy refusal that no refused URL names, once."""
    seen = {_authority(url) for url in blocked}
    found: list[str] = []
    for target, reason in refused:
        if target not in seen and f"tcp://{target}" not in found:
            logger.info("render: the egress proxy refused %s (%s)", target, reason)
            found.append(f"tcp://{target}")
    return found


def _authority(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "wss": 443}.get(parts.scheme, 80)
    except ValueError:
        return None
    return authority(parts.hostname or "", port)


def _scroll(page: Any, session: _Session, steps: int) -> None:
    from playwright.sync_api import Error as PlaywrightError

    # Step down the page so IntersectionObserver and scroll-listener lazy loaders
    # fire; the height is re-read at each step because the page may grow.
    for step in range(1, steps + 1):
        if session.remaining_s() <= 0:
            return
        try:
            page.evaluate(
                "f => window.scrollTo(0, document.documentElement.scrollHeight * f)",
                step / steps,
            )
        except PlaywrightError as exc:  # the page navigated away by script
            logger.debug("render: scroll failed: %s", exc.message)
        page.wait_for_timeout(SCROLL_PAUSE_MS)


@dataclass
class _Session:
    """State shared by one render's route handlers and its steps."""

    guard: Guard
    deadline: float
    blocked: list[str] = field(default_factory=list)
    failed: list[FailedRequest] = field(default_factory=list)
    refusals: dict[str, str] = field(default_factory=dict)
    proxy: EgressProxy | None = None
    redirect_to: str | None = None
    navigation_error: str | None = None  # why the page's own fetch failed
    in_flight: set[Any] = field(default_factory=set)
    last_activity: float = 0.0

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def remaining_ms(self) -> float:
        # Playwright reads 0 as "no timeout": never pass it.
        return max(1.0, self.remaining_s() * 1000)

    def refuse(self, url: str) -> bool:
        try:
            reason = self.guard(url)
        except Exception as exc:  # fail closed
            logger.exception("render: the guard failed on %s", url)
            reason = f"guard failed: {exc!r}"
        if reason is None:
            return False
        logger.info("render: refused %s (%s)", url, reason)
        self.blocked.append(url)
        self.refusals[url] = reason
        return True

    def handle(self, route: Any) -> None:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        request = route.request
        try:
            if self.refuse(request.url):
                route.abort("blockedbyclient")
            elif request.resource_type in SKIPPED_RESOURCE_TYPES:
                route.abort("aborted")
            else:
                self.fetch(route, request)
        except PlaywrightError as exc:
            # The fetch failed or timed out, or the page went away meanwhile.
            logger.debug("render: %s failed: %s", request.url, exc.message)
            timed_out = isinstance(exc, PlaywrightTimeoutError)
            reason = exc.message.splitlines()[0] if exc.message else "failed"
            if _is_page_navigation(request):
                self.navigation_error = reason
            else:
                self.fail(request, "timed out" if timed_out else reason)
            with contextlib.suppress(PlaywrightError):
                route.abort("timedout" if timed_out else "failed")

    def fetch(self, route: Any, request: Any) -> None:
        url = request.url
        response = route.fetch(max_redirects=0, timeout=self.remaining_ms())
        hops = 0
        while (target := _redirect_target(response, url)) is not None:
            hops += 1
            if hops > MAX_REDIRECTS or self.refuse(target):
                route.abort("blockedbyclient" if hops <= MAX_REDIRECTS else "failed")
                return
            if _is_page_navigation(request):
                # Let `navigate` go to the next hop, so the page knows its URL.
                self.redirect_to = target
                route.abort("aborted")
                return
            # Subresources and frames get the final response under their first
            # URL; Chromium must not see the redirect, or it follows it unguarded.
            method = request.method if response.status in (307, 308) else "GET"
            url = target
            response = route.fetch(
                url=url, method=method, max_redirects=0, timeout=self.remaining_ms()
            )
        egress = response.headers.get(EGRESS_HEADER.lower())
        if egress == "refused":
            self.refused_by_proxy(url)
            route.abort("blockedbyclient")
            return
        if egress == "unreachable":  # as a network error, not an HTTP answer
            reason = f"cannot connect to {urlsplit(url).netloc}"
            if _is_page_navigation(request):
                self.navigation_error = reason
            else:
                self.fail(request, reason)
            route.abort("connectionfailed")
            return
        if response.status >= 400 and not _is_page_navigation(request):
            self.fail(request, f"HTTP {response.status}")
        route.fulfill(response=response)

    def refused_by_proxy(self, url: str) -> None:
        """The egress proxy refused `url`'s address: the guard allowed the URL,
        but its host resolved to a refused address at connect time."""
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        why = self.proxy.refusal(parts.hostname or "", port) if self.proxy else None
        reason = why or "refused by the egress proxy"
        logger.info("render: refused %s at connect time (%s)", url, reason)
        self.blocked.append(url)
        self.refusals[url] = reason

    def fail(self, request: Any, reason: str) -> None:
        logger.debug("render: %s failed: %s", request.url, reason)
        self.failed.append(FailedRequest(request.url, request.resource_type, reason))

    def refuse_websocket(self, websocket: Any) -> None:
        # Images never need a WebSocket, and routes do not see them: refuse all.
        self.blocked.append(websocket.url)
        websocket.close(code=1008, reason="refused by the scraper")

    def navigate(self, page: Any, url: str) -> int | None:
        from playwright.sync_api import Error as PlaywrightError

        for _ in range(MAX_REDIRECTS + 1):
            self.redirect_to = None
            try:
                response = page.goto(
                    url, wait_until="load", timeout=self.remaining_ms()
                )
            except PlaywrightError:
                if self.redirect_to is None:
                    raise
                url = self.redirect_to
                continue
            return response.status if response is not None else None
        raise RenderError(url, "too many redirects")

    def watch(self, page: Any) -> None:
        page.on("request", self.started)
        page.on("requestfinished", self.ended)
        page.on("requestfailed", self.ended)

    def started(self, request: Any) -> None:
        self.in_flight.add(request)
        self.last_activity = time.monotonic()

    def ended(self, request: Any) -> None:
        self.in_flight.discard(request)
        self.last_activity = time.monotonic()

    def wait_for_idle(self, page: Any) -> None:
        # Playwright's "networkidle" load state fires once per navigation, so it
        # cannot tell when the requests set off by scrolling are done; count them.
        # At most a third of the time left (at least 2 s): a page that polls
        # forever must still leave time to scroll and read the DOM.
        idle_budget = min(self.remaining_s(), max(2.0, self.remaining_s() / 3))
        give_up = time.monotonic() + idle_budget
        while time.monotonic() < give_up:
            quiet_for = time.monotonic() - self.last_activity
            if not self.in_flight and quiet_for >= QUIET_S:
                return
            page.wait_for_timeout(100)  # also lets Playwright deliver events
        logger.debug("render: network still busy after %.1fs", idle_budget)

    def explain(self, exc: Exception) -> str:
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        message = getattr(exc, "message", "") or str(exc)
        if "ERR_BLOCKED_BY_CLIENT" in message and self.refusals:
            # A navigation's document is its first request: the latest refusal.
            url, reason = next(reversed(self.refusals.items()))
            return f"refused {url}: {reason}"
        # Past the deadline, the failure may come from a route's fetch timing out
        # just before the navigation's own timer.
        if isinstance(exc, PlaywrightTimeoutError) or self.remaining_s() <= 0:
            return "timed out"
        if self.navigation_error:  # more telling than Chromium's net::ERR_FAILED
            return self.navigation_error
        return message.splitlines()[0] if message else "navigation failed"


def _redirect_target(response: Any, url: str) -> str | None:
    location = response.headers.get("location")
    if 300 <= response.status < 400 and location:
        return urljoin(url, location)
    return None


def _is_page_navigation(request: Any) -> bool:
    return request.is_navigation_request() and request.frame.parent_frame is None
