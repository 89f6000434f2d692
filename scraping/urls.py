"""URLs in one canonical spelling, as a crawler must compare them: what
`extract` records for every link and image, and what the crawl keys on.

Pure functions: no network, no Django.
"""

from __future__ import annotations

import functools
import re
import string
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
PATH_SAFE = "/:@!$&'()*+,;=%"
QUERY_SAFE = PATH_SAFE + "?"
ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Browsers drop tabs and newlines anywhere in a URL, and trim spaces and controls.
URL_NOISE = re.compile(r"[\t\n\r]")
HOST_CHARS = re.compile(r"[a-z0-9._:-]+")  # names, IPv4, IPv6 without brackets
URL_TRIM = "".join(chr(i) for i in range(33))


@functools.lru_cache(maxsize=4096)  # a page names the same URLs many times
def normalize_url(url: str, base: str | None = None) -> str | None:
    """An absolute http(s) URL in one canonical spelling, or None.

    Resolves against `base`, drops the fragment and default ports, lower-cases
    scheme and host (IDNA for non-ASCII hosts), removes dot segments and writes
    percent-escapes one way (unreserved characters decoded, hex upper-cased).
    """
    url = URL_NOISE.sub("", url or "").strip(URL_TRIM)
    if not url:
        return None
    # As browsers do for http(s): a backslash before the query is a slash.
    head, sep, tail = url.partition("?")
    url = head.replace("\\", "/") + sep + tail
    try:
        parts = urlsplit(urljoin(base, url) if base else url)
        scheme = parts.scheme.lower()
        host, port = parts.hostname, parts.port
    except ValueError:  # bad port, unbalanced IPv6 brackets
        return None
    if scheme not in DEFAULT_PORTS or not host:
        return None
    host = _normalize_host(host)
    if host is None:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        netloc = f"{_normalize_escapes(userinfo, ':%')}@{netloc}"
    path = _remove_dot_segments(_normalize_escapes(parts.path, PATH_SAFE)) or "/"
    query = _normalize_escapes(parts.query, QUERY_SAFE)
    return urlunsplit((scheme, netloc, path, query, ""))


def same_site(url: str, start_url: str) -> bool:
    """Whether both URLs are on one host, counting "www.host" as "host"."""
    host = _site_host(url)
    return host is not None and host == _site_host(start_url)


def _site_host(url: str) -> str | None:
    normalized = normalize_url(url)
    if normalized is None:
        return None
    return (urlsplit(normalized).hostname or "").removeprefix("www.") or None


def _normalize_host(host: str) -> str | None:
    host = unquote(host).lower().rstrip(".")  # browsers decode escapes in hosts
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return host if HOST_CHARS.fullmatch(host) else None


def _normalize_escapes(text: str, safe: str) -> str:
    text = STRAY_PERCENT.sub("%25", text)
    text = quote(text, safe=safe)
    return ESCAPE.sub(_canonical_escape, text)


def _canonical_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in UNRESERVED else f"%{match.group(1).upper()}"


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 section 5.2.4; urljoin only does this for relative references.
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(output) > 1:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if path.endswith(("/.", "/..")):
        output.append("")
    return "/".join(output)
