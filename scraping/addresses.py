"""Which addresses Imagineer may talk to: the address policy every fetch and
every browser request goes through (scraping.safe_fetch checks it early and
again at connect time; scraping.render and the egress proxy use it too).

Public addresses only, unless SCRAPER_ALLOW_PRIVATE_ADDRESSES: private,
loopback, link-local and the other special ranges are refused in any
spelling of the address (octal, hex, short IPv4 forms, IPv4 inside IPv6).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import string
from urllib.parse import unquote

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedURL(Exception):
    """A URL refused for safety: bad scheme, no host, or an unsafe address."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- Address policy -----------------------------------------------------------------


def _networks(cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs.split())


# Reachable only with allow_private (local use and tests). 100.64/10 is carrier-grade
# NAT shared space, which is also what Tailscale-style private networks use.
_LOCAL_NETWORKS = _networks(
    "10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10 127.0.0.0/8 ::1/128 fc00::/7"
)
# IANA special-purpose blocks that are never a target, even with allow_private:
# link-local holds the cloud metadata endpoints. Listed explicitly because Python
# 3.11's `is_global` still calls several of these global (192.0.0.0/24, fec0::/10).
_NEVER_NETWORKS = _networks(
    "0.0.0.0/8 169.254.0.0/16 192.0.0.0/24 192.0.2.0/24 192.88.99.0/24 198.18.0.0/15 "
    "198.51.100.0/24 203.0.113.0/24 224.0.0.0/4 240.0.0.0/4 "
    "::/128 64:ff9b:1::/48 100::/64 2001::/23 2001:db8::/32 3fff::/20 5f00::/16 "
    "fe80::/10 fec0::/10 ff00::/8"
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
# IPv6 prefixes whose last 32 bits are an IPv4 address the packet really goes to:
# NAT64 (RFC 6052), SIIT-translated (RFC 2765) and the deprecated v4-compatible form.
_EMBEDS_V4_LOW_BITS = _networks("64:ff9b::/96 ::ffff:0:0:0/96 ::/96")


def _embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(addr, ipaddress.IPv4Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    # ::1 and :: sit inside ::/96 but are IPv6 loopback and unspecified, not IPv4.
    if int(addr) > 1 and any(addr in net for net in _EMBEDS_V4_LOW_BITS):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def _is_public(addr: IPAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr not in _GLOBAL_UNICAST_V6:
        return False
    return addr.is_global and not addr.is_multicast


def check_address(ip: str, *, allow_private: bool) -> None:
    """Raise BlockedURL unless `ip` is an address we may connect to."""
    reason = _address_refusal(ip, allow_private)
    if reason is not None:
        raise BlockedURL(reason)


@functools.lru_cache(maxsize=4096)
def _address_refusal(ip: str, allow_private: bool) -> str | None:
    # Cached: a crawl dials the same few addresses for every image, and the
    # verdict depends on nothing else.
    try:
        _check_address(ip, allow_private=allow_private)
    except BlockedURL as exc:
        return exc.reason
    return None


def _check_address(ip: str, *, allow_private: bool) -> None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise BlockedURL(f"{ip!r} is not an IP address") from None
    embedded = _embedded_ipv4(addr)
    if embedded is not None:
        try:
            check_address(str(embedded), allow_private=allow_private)
        except BlockedURL as exc:
            raise BlockedURL(f"{addr} embeds an IPv4 address: {exc.reason}") from None
        return
    if any(addr in net for net in _NEVER_NETWORKS):
        raise BlockedURL(f"{addr} is a link-local, multicast or reserved address")
    if any(addr in net for net in _LOCAL_NETWORKS):
        if allow_private:
            return
        raise BlockedURL(
            f"{addr} is a private or loopback address "
            "(SCRAPER_ALLOW_PRIVATE_ADDRESSES allows it)"
        )
    if not _is_public(addr):
        raise BlockedURL(f"{addr} is not a public address")


_DIGITS = {8: set(string.octdigits), 10: set(string.digits), 16: set(string.hexdigits)}


def _ipv4_number(part: str) -> int | None:
    """One dotted part as the WHATWG URL parser reads it: 0x hex, 0 octal, decimal."""
    if not part:
        return None
    radix = 10
    if part[:2].lower() == "0x":
        radix, part = 16, part[2:]
    elif len(part) > 1 and part[0] == "0":
        radix, part = 8, part[1:]
    if not part:
        return 0
    # Checked by hand: int() would also accept "+1", " 1" and "1_0".
    if not set(part) <= _DIGITS[radix]:
        return None
    return int(part, radix)


def _ipv4_literal(host: str) -> str | None:
    """The IPv4 address a host means in any spelling (2130706433, 0177.0.0.1, 0x7f.1,
    127.1), None for a domain name. Browsers and inet_aton() accept all of these."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    # WHATWG: a host whose last label is a number is an IPv4 address or invalid.
    if not parts[-1] or (
        not set(parts[-1]) <= _DIGITS[10] and _ipv4_number(parts[-1]) is None
    ):
        return None
    numbers: list[int] = []
    for part in parts:
        number = _ipv4_number(part)
        if number is None:
            raise BlockedURL(f"invalid IPv4 address {host!r}")
        numbers.append(number)
    *head, last = numbers
    if len(numbers) > 4 or any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        raise BlockedURL(f"invalid IPv4 address {host!r}")
    return str(
        ipaddress.IPv4Address(sum(n << 8 * (3 - i) for i, n in enumerate(head)) + last)
    )


@functools.lru_cache(maxsize=4096)  # pure, and asked twice per request
def ip_literal(host: str) -> str | None:
    host = host.strip("[]")
    if ":" in host:  # only IPv6 literals contain a colon
        try:
            return str(ipaddress.IPv6Address(unquote(host)))
        except ValueError:
            raise BlockedURL(f"invalid IPv6 address {host!r}") from None
    return _ipv4_literal(host)


def _is_localhost_name(host: str) -> bool:
    # RFC 6761: these names always mean loopback, whatever DNS says.
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost")


def check_url(url: str, *, allow_private: bool) -> httpx.URL:
    """Raise BlockedURL unless `url` is http(s) with a host that may be public;
    returns it parsed (httpx), which is what the fetcher then dials.

    IP literals are checked here in every spelling; names are checked after DNS, at
    connect time (no DNS here).
    """
    try:
        parsed = httpx.URL(url)
        host = parsed.host  # decodes IDNA: "xn--" raises here
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        # ValueError: idna's errors (UnicodeError) for a malformed A-label.
        raise BlockedURL(f"invalid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise BlockedURL(f"scheme {parsed.scheme or '(none)'!r} is not http or https")
    if not host:
        raise BlockedURL("URL has no host")
    ip = ip_literal(host)
    if ip is not None:
        check_address(ip, allow_private=allow_private)
    elif not allow_private and _is_localhost_name(host):
        raise BlockedURL(f"{host} is a loopback name")
    return parsed


def resolve_checked(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Resolve `host` and check EVERY address (one bad record refuses the host).

    Raises BlockedURL, or OSError (socket.gaierror) when the name does not resolve.
    """
    literal = ip_literal(host)
    if literal is not None:
        check_address(literal, allow_private=allow_private)
        return [literal]
    if not allow_private and _is_localhost_name(host):
        raise BlockedURL(f"{host} is a loopback name")
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        try:
            check_address(address, allow_private=allow_private)
        except BlockedURL as exc:
            raise BlockedURL(f"{host} resolves to {exc.reason}") from None
    return addresses
