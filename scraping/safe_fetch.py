"""The one guarded way Imagineer talks to the network.

Every page, image, redirect hop and robots.txt goes through `SafeFetcher`, which

- refuses URLs whose host is, or resolves to, a non-public address in any spelling
  (`check_url` early, and again at connect time on the address actually dialled, so
  there is no DNS-rebinding window between the check and the connection);
- follows redirects itself, re-checking every hop;
- streams with a byte cap and a per-attempt time cap, retries 408/429/5xx and
  connection errors with backoff honouring Retry-After;
- is polite: robots.txt (Protego, Google's rules) and Crawl-delay, a per-host
  concurrency cap and a per-host delay that adapts to the server (`throttle.py`), an
  identifying User-Agent, and `X-Robots-Tag: noai`-style opt-outs for images.

It runs on aiohttp, which (unlike httpx on a guarded httpcore backend) keeps its
rate as concurrency grows: docs/benchmarks.md, "Downloads".
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import logging
import random
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import aiohttp
import aiohttp.abc
import certifi
import httpx
import yarl
from django.conf import settings
from multidict import CIMultiDictProxy
from protego import Protego

# The address policy lives in scraping.addresses; these names are imported
# from here by the rest of the app, and stay importable from here.
from scraping.addresses import (
    BlockedURL,
    check_address,
    check_url,
    ip_literal,
    resolve_checked,
)
from scraping.throttle import Throttle

__all__ = [
    "BlockedURL",
    "FetchError",
    "FetchResult",
    "FetchSkipped",
    "SafeFetcher",
    "check_address",
    "check_url",
    "resolve_checked",
]

logger = logging.getLogger(__name__)


class FetchSkipped(Exception):
    """A polite or limit skip: robots.txt, X-Robots-Tag, too large."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FetchError(Exception):
    """Network error, timeout, or an HTTP error status after retries."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason if status is None else f"{reason} (HTTP {status})")
        self.reason = reason
        self.status = status


# --- Connect-time guard -------------------------------------------------------------


class _CheckedResolver(aiohttp.abc.AbstractResolver):
    """aiohttp resolver that answers only checked addresses (every record of a
    name checked, one bad record refuses the host), so the error names the host."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        resolve = functools.partial(
            resolve_checked, host, port, allow_private=self._allow_private
        )
        # Literals need no thread hop; names go to getaddrinfo in a thread (an
        # OSError there becomes aiohttp's ClientConnectorDNSError).
        try:
            addresses = (
                resolve() if ip_literal(host) else await asyncio.to_thread(resolve)
            )
        except OSError as exc:
            raise OSError(f"resolving {host} failed: {exc}") from exc
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        pass


def _checked_socket(
    addr_info: tuple[Any, ...], *, allow_private: bool
) -> socket.socket:
    """aiohttp's socket factory: the last word, on the very address dialled.

    The resolver is not asked for IP literals (aiohttp dials them directly) and
    its answers are cached, so the address is checked again here, where no
    spelling, cache or DNS answer can come between the check and the connect.
    """
    family, type_, proto, _, address = addr_info
    check_address(str(address[0]), allow_private=allow_private)
    return socket.socket(family=family, type=type_, proto=proto)


def _guarded_session(
    *, allow_private: bool, connections: int, user_agent: str
) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=connections,
        resolver=_CheckedResolver(allow_private=allow_private),
        socket_factory=functools.partial(_checked_socket, allow_private=allow_private),
        # certifi's roots, as httpx used before: the same hosts verify everywhere.
        ssl=ssl.create_default_context(cafile=certifi.where()),
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": user_agent},
        trust_env=False,  # an environment proxy would dial for us, unchecked
    )


def _request_url(url: httpx.URL) -> tuple[yarl.URL, dict[str, str]]:
    """The URL aiohttp dials, as checked: encoded as httpx parsed it, and an IPv4
    literal in any spelling (127.1, 2130706433) written canonically, which aiohttp
    insists on; the Host header keeps the spelling asked for."""
    literal = ip_literal(url.host)
    target = yarl.URL(str(url), encoded=True)
    if literal is None or ":" in literal or literal == url.host:
        return target, {}
    return target.with_host(literal), {"Host": url.netloc.decode("ascii")}


# --- Fetching -----------------------------------------------------------------------

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_BACKOFF_BASE = 0.5  # seconds before the first retry; doubles each time
_MAX_WAIT = 30.0  # cap on one backoff or Retry-After wait
_MAX_CRAWL_DELAY = 60.0  # like Nutch's fetcher.max.crawl.delay: skip, don't crawl
_ROBOTS_MAX_BYTES = 500 * 1024  # Google ignores robots.txt content past 500 KiB
_ALLOW_ALL = Protego.parse("")
_DISALLOW_ALL = Protego.parse("User-agent: *\nDisallow: /\n")
ROBOTS_DISALLOWED = "robots: disallowed by robots.txt"
# img2dataset's default opt-outs; "none" is noindex plus nofollow.
_OPT_OUT_DIRECTIVES = frozenset(
    {"noai", "noimageai", "noindex", "noimageindex", "none"}
)
# Directives whose value follows a colon, so "name:" is not a user-agent prefix.
_VALUED_DIRECTIVES = frozenset(
    {"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}
)


def _is_retryable(status: int) -> bool:
    # 501 and 505 are permanent answers, not overload.
    return status in (408, 429) or (500 <= status <= 599 and status not in (501, 505))


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value and value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _x_robots_opt_out(headers: CIMultiDictProxy[str], token: str) -> str | None:
    """The opt-out directive in X-Robots-Tag that applies to us, if any.

    A value may start with a user-agent ("otherbot: noai, noindex"); its directives
    then apply only to that agent.
    """
    for value in headers.getall("x-robots-tag", ()):
        agent = None
        for part in value.split(","):
            name, colon, rest = part.partition(":")
            name = name.strip().lower()
            if colon and name not in _VALUED_DIRECTIVES:
                agent, directive = name, rest.strip().lower()
            else:
                directive = part.strip().lower()
            if directive in _OPT_OUT_DIRECTIVES and agent in (None, token.lower()):
                return directive
    return None


@dataclass(frozen=True)
class RobotsState:
    """What reading a host's robots.txt found: the crawl log's words for it, and
    why a host whose robots.txt could not be read is not crawled."""

    status: int | None = None  # robots.txt's HTTP status, if it answered
    note: str = ""
    blocked: str = ""  # the host (or a robots.txt redirect) is refused: why
    unreachable: str = ""  # no answer: why
    absent: bool = False  # answered 4xx (not 429): no rules, all allowed


@dataclass(frozen=True)
class FetchResult:
    url: str  # final URL after redirects
    status: int
    headers: dict[str, str]  # lower-cased names, repeated headers joined with ", "
    content: bytes
    elapsed_ms: int  # fetch() time less politeness, robots.txt and backoff waits
    redirects: list[str]  # every URL that answered with a redirect, in order


@dataclass(frozen=True)
class _Answer:
    url: str
    status: int
    headers: CIMultiDictProxy[str]
    content: bytes


def _flat_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """Lower-cased names, a repeated header's values joined with ", "."""
    flat: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        flat[key] = f"{flat[key]}, {value}" if key in flat else value
    return flat


@dataclass
class _Timer:
    started: float = field(default_factory=time.monotonic)
    waited: float = 0.0

    def elapsed_ms(self) -> int:
        return max(0, round((time.monotonic() - self.started - self.waited) * 1000))


@dataclass
class _Host:
    slots: asyncio.Semaphore
    throttle: Throttle


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))


class SafeFetcher:
    """An HTTP client (aiohttp) that only reaches public addresses, politely.

    One instance per crawl (it keeps robots.txt and per-host timing); use it within a
    single event loop.
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        user_agent: str | None = None,
        max_bytes: int = 50 * 1024 * 1024,
        timeout: float = 20.0,
        politeness_delay: float = 1.0,
        per_host_concurrency: int = 2,
        respect_robots: bool = True,
        max_redirects: int = 5,
        retries: int = 2,
        max_concurrency: int = 16,
        adaptive: bool = True,
        min_delay: float | None = None,
    ) -> None:
        if per_host_concurrency < 1 or max_concurrency < 1:
            raise ValueError("concurrency limits must be at least 1")
        if retries < 0 or max_redirects < 0 or max_bytes < 0 or timeout <= 0:
            raise ValueError(
                "retries, max_redirects, max_bytes and timeout must be >= 0"
            )
        self._allow_private = allow_private
        self._user_agent = user_agent or settings.SCRAPER_USER_AGENT
        # robots.txt groups name the product token: "ImagineerBot", not the version.
        self._robots_token = self._user_agent.split("/", 1)[0].strip()
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._politeness_delay = politeness_delay
        self._adaptive = adaptive
        if min_delay is None:
            min_delay = getattr(settings, "SCRAPER_MIN_DELAY", 0.0)
        self._min_delay = min_delay
        self._per_host_concurrency = per_host_concurrency
        self._respect_robots = respect_robots
        self._max_redirects = max_redirects
        self._retries = retries
        self._global = asyncio.Semaphore(max_concurrency)
        self._hosts: dict[str, _Host] = {}
        self._robots: dict[tuple[str, str, int], Protego] = {}
        self._robots_states: dict[tuple[str, str, int], RobotsState] = {}
        self._robots_locks: dict[tuple[str, str, int], asyncio.Lock] = {}
        self._connections = max_concurrency
        self._session: aiohttp.ClientSession | None = None  # made in the loop

    async def __aenter__(self) -> SafeFetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        # aiohttp binds a session to the running loop, so it is made on first use.
        if self._session is None:
            self._session = _guarded_session(
                allow_private=self._allow_private,
                connections=self._connections,
                user_agent=self._user_agent,
            )
        return self._session

    async def fetch(self, url: str, *, purpose: str = "page") -> FetchResult:
        """GET `url`; raises BlockedURL, FetchSkipped or FetchError."""
        if purpose not in ("page", "image"):
            raise ValueError(f"purpose must be 'page' or 'image', not {purpose!r}")
        timer = _Timer()
        answer, redirects = await self._follow(
            url, purpose=purpose, obey_robots=self._respect_robots, timer=timer
        )
        if not 200 <= answer.status < 300:
            raise FetchError("HTTP error", status=answer.status)
        return FetchResult(
            url=answer.url,
            status=answer.status,
            headers=_flat_headers(answer.headers),
            content=answer.content,
            elapsed_ms=timer.elapsed_ms(),
            redirects=redirects,
        )

    async def robots_allows(self, url: str) -> bool:
        """Whether robots.txt lets us fetch `url` (True when robots are not obeyed)."""
        if not self._respect_robots:
            return True
        check_url(url, allow_private=self._allow_private)
        robots = await self._robots_for(httpx.URL(url))
        return robots.can_fetch(url, self._robots_token)

    def robots_state(self, url: str) -> RobotsState | None:
        """What reading robots.txt of `url`'s host found, once it was read."""
        return self._robots_states.get(_origin(httpx.URL(url)))

    def crawl_delay(self, url: str) -> float | None:
        """Seconds between requests that robots.txt asks of us (Crawl-delay or
        Request-rate), once robots.txt has been read for that host."""
        return self._crawl_delay(_origin(httpx.URL(url)))

    def _crawl_delay(self, origin: tuple[str, str, int]) -> float | None:
        robots = self._robots.get(origin)
        if robots is None:
            return None
        delays = [robots.crawl_delay(self._robots_token) or 0.0]
        rate = robots.request_rate(self._robots_token)
        if rate is not None and rate.requests > 0:
            delays.append(rate.seconds / rate.requests)
        return max(delays) or None

    async def _follow(
        self,
        url: str,
        *,
        purpose: str,
        obey_robots: bool,
        timer: _Timer,
        retries: int | None = None,
    ) -> tuple[_Answer, list[str]]:
        redirects: list[str] = []
        for _ in range(self._max_redirects + 1):
            parsed = check_url(url, allow_private=self._allow_private)
            if obey_robots:
                await self._check_robots(url, timer)
            answer = await self._with_retries(
                url, parsed, purpose=purpose, timer=timer, retries=retries
            )
            location = answer.headers.get("location")
            if answer.status not in _REDIRECT_STATUSES or not location:
                return answer, redirects
            redirects.append(url)
            try:
                url = str(httpx.URL(url).join(location))
            except httpx.InvalidURL as exc:
                raise BlockedURL(f"invalid redirect location: {exc}") from None
        raise FetchError(f"more than {self._max_redirects} redirects")

    async def _check_robots(self, url: str, timer: _Timer) -> None:
        # robots.txt is read once per host; its time is not this URL's time.
        started = time.monotonic()
        allowed = await self.robots_allows(url)
        timer.waited += time.monotonic() - started
        if not allowed:
            raise self._robots_refusal(url)
        delay = self.crawl_delay(url)
        if delay is not None and delay > _MAX_CRAWL_DELAY:
            raise FetchSkipped(f"robots: Crawl-delay {delay:g}s is over our limit")

    def _robots_refusal(self, url: str) -> Exception:
        """Why robots.txt keeps us off `url`, told truly: a refused or unreachable
        host is that, not "disallowed"."""
        state = self.robots_state(url) or RobotsState()
        if state.blocked:
            return BlockedURL(state.blocked)
        if state.unreachable.startswith("network error"):
            return FetchError(state.unreachable)  # the host itself does not answer
        if state.unreachable:
            return FetchSkipped(
                f"robots: robots.txt unreachable ({state.unreachable}), so the "
                "host is not crawled"
            )
        if state.status is not None and not 200 <= state.status < 300:
            # Answered neither rules nor "absent" (a 5xx, a 429): nothing is allowed.
            return FetchSkipped(
                f"robots: robots.txt answered HTTP {state.status}, so the host is "
                "not crawled"
            )
        return FetchSkipped(ROBOTS_DISALLOWED)

    async def _with_retries(
        self,
        url: str,
        parsed: httpx.URL,
        *,
        purpose: str,
        timer: _Timer,
        retries: int | None,
    ) -> _Answer:
        retries = self._retries if retries is None else retries
        for attempt in range(retries + 1):
            try:
                answer = await self._exchange(url, parsed, purpose=purpose, timer=timer)
            except aiohttp.ClientConnectionError as exc:
                if attempt == retries:
                    # str, not repr: the reason reaches the crawl log and the API.
                    if isinstance(exc, aiohttp.ClientConnectorDNSError):
                        exc = exc.os_error  # says which host, and why
                    why = str(exc) or type(exc).__name__
                    raise FetchError(f"network error: {why}") from exc
                wait = self._backoff(attempt, None)
            except aiohttp.ClientError as exc:  # e.g. a broken gzip body
                raise FetchError(f"bad response: {exc!r}") from exc
            else:
                if attempt == retries or not _is_retryable(answer.status):
                    return answer
                wait = self._backoff(attempt, answer.headers.get("retry-after"))
            logger.debug("retrying %s in %.2fs (attempt %d)", url, wait, attempt + 1)
            timer.waited += wait
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # the loop always returns or raises

    @staticmethod
    def _backoff(attempt: int, retry_after: str | None) -> float:
        # Jitter keeps many workers that failed together from retrying together.
        wait = _BACKOFF_BASE * 2**attempt * (1 + random.random() / 4)
        asked = _retry_after_seconds(retry_after)
        if asked is not None:
            wait = max(wait, asked)
        return min(wait, _MAX_WAIT)

    async def _exchange(
        self, url: str, parsed: httpx.URL, *, purpose: str, timer: _Timer
    ) -> _Answer:
        """One GET within the politeness slots and the total time cap.

        A timeout is not retried: a server that held us for the whole timeout once
        would likely do it again, and one slow URL must not stall the crawl.
        """
        target, headers = _request_url(parsed)
        async with self._slot(parsed, timer) as throttle:
            sent = time.monotonic()
            status: int | None = None
            retry_after: str | None = None
            try:
                async with (
                    asyncio.timeout(self._timeout),
                    self._client().get(
                        target, headers=headers, allow_redirects=False
                    ) as response,
                ):
                    status, retry_after = (
                        response.status,
                        response.headers.get("retry-after"),
                    )
                    latency = time.monotonic() - sent  # to the headers, as Scrapy
                    content = b""
                    if 200 <= status < 300:
                        self._check_opt_out(response.headers, purpose)
                        content = await self._read(response, purpose)
            except TimeoutError as exc:
                raise FetchError(f"timed out after {self._timeout:g}s") from exc
            finally:
                if status is None:  # no answer: the whole wait counts as latency
                    latency = time.monotonic() - sent
                throttle.observe(
                    time.monotonic(),
                    latency=latency,
                    status=status,
                    retry_after=_retry_after_seconds(retry_after),
                )
        logger.debug("GET %s -> %d", url, status)
        return _Answer(url, status, response.headers, content)

    def _check_opt_out(self, headers: CIMultiDictProxy[str], purpose: str) -> None:
        if purpose != "image":
            return
        directive = _x_robots_opt_out(headers, self._robots_token)
        if directive is not None:
            raise FetchSkipped(f"x-robots-tag {directive}")

    async def _read(self, response: aiohttp.ClientResponse, purpose: str) -> bytes:
        # robots.txt past the cap is truncated, as Google does; anything else skipped.
        truncate = purpose == "robots"
        limit = _ROBOTS_MAX_BYTES if truncate else self._max_bytes
        declared = response.headers.get("content-length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            raise FetchSkipped("too large")
        chunks: list[bytes] = []
        size = 0
        # Counted after decompression, so a gzip bomb hits the cap too.
        async for chunk in response.content.iter_any():
            if size + len(chunk) > limit:
                if not truncate:
                    raise FetchSkipped("too large")
                chunks.append(chunk[: limit - size])
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    @contextlib.asynccontextmanager
    async def _slot(self, url: httpx.URL, timer: _Timer) -> AsyncIterator[Throttle]:
        """Per-host concurrency and spacing, then the global cap; yields the
        host's throttle, which the caller tells how the answer went.

        The host slot is taken before the global one, so requests queued for one
        busy host do not hold global slots that other hosts could use.
        """
        started = time.monotonic()
        host = self._hosts.get(url.host) or self._add_host(url.host)
        async with host.slots:
            if self._respect_robots:
                host.throttle.crawl_delay = self._crawl_delay(_origin(url))
            # Each caller books its own start (spaces starts, not whole requests);
            # booking never awaits, so starts keep the order of arrival.
            wait = host.throttle.reserve(time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
            async with self._global:
                timer.waited += time.monotonic() - started
                yield host.throttle

    def _add_host(self, name: str) -> _Host:
        throttle = Throttle(
            start_delay=self._politeness_delay,
            min_delay=self._min_delay,
            target_concurrency=self._per_host_concurrency,
            adaptive=self._adaptive,
        )
        host = self._hosts[name] = _Host(
            asyncio.Semaphore(self._per_host_concurrency), throttle
        )
        return host

    def host_delay(self, url: str) -> float | None:
        """The delay now kept between request starts to `url`'s host, once it
        was asked for anything."""
        host = self._hosts.get(httpx.URL(url).host)
        return None if host is None else host.throttle.current()

    async def _robots_for(self, url: httpx.URL) -> Protego:
        key = _origin(url)
        lock = self._robots_locks.setdefault(key, asyncio.Lock())
        async with lock:  # one robots.txt request per host, however many callers
            if key not in self._robots:
                self._robots[key] = await self._read_robots(url.join("/robots.txt"))
        return self._robots[key]

    async def _read_robots(self, robots_url: httpx.URL) -> Protego:
        """Google's rules: 2xx parse, 4xx allow all, 429/5xx/unreachable deny all."""
        key = _origin(robots_url)
        try:
            answer, _ = await self._follow(
                str(robots_url),
                purpose="robots",
                obey_robots=False,
                timer=_Timer(),
                retries=0,
            )
        except BlockedURL as exc:
            self._robots_states[key] = RobotsState(blocked=exc.reason)
            logger.info("%s refused (%s); not crawling the host", robots_url, exc)
            return _DISALLOW_ALL
        except (FetchError, FetchSkipped) as exc:
            self._robots_states[key] = RobotsState(unreachable=exc.reason)
            logger.info("%s unreachable (%s); not crawling the host", robots_url, exc)
            return _DISALLOW_ALL
        status = answer.status
        if 200 <= status < 300:
            self._robots_states[key] = RobotsState(status, "robots.txt read")
            return Protego.parse(answer.content.decode("utf-8", errors="replace"))
        if 400 <= status < 500 and status != 429:
            note = f"no robots.txt (HTTP {status}): all allowed"
            self._robots_states[key] = RobotsState(status, note, absent=True)
            return _ALLOW_ALL
        note = f"robots.txt answered HTTP {status}: nothing may be crawled"
        self._robots_states[key] = RobotsState(status, note)
        logger.info("%s answered %d; not crawling the host", robots_url, status)
        return _DISALLOW_ALL
