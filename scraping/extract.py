"""Find a page's images, the text that describes them, and its links.

Pure functions over a string of HTML (BeautifulSoup with the standard library's
parser): no network, no Django. The crawler calls `extract_page` on every fetched or
rendered page and follows `links`; the pipeline drops `looks_like_ui_asset`
candidates before downloading (`ui_asset_reason` says why).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from bs4 import BeautifulSoup, NavigableString, Tag

from scraping.urls import normalize_url

logger = logging.getLogger(__name__)

CONTEXT_MAX_CHARS = 500
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Elements that usually hold one image and the words about it, innermost first.
CONTEXT_SCOPES = ("figure", "li", "td", "article", "section", "aside", "main")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
# Link targets that are files, not pages: never worth fetching as HTML.
NON_HTML_EXTENSIONS = frozenset().union(
    IMAGE_EXTENSIONS,
    {".svg", ".ico", ".tif", ".tiff", ".avif", ".heic"},
    {".pdf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".epub"},
    {".zip", ".gz", ".tgz", ".bz2", ".xz", ".rar", ".7z", ".tar"},
    {".exe", ".dmg", ".apk", ".iso", ".bin"},
    {".mp3", ".m4a", ".wav", ".flac", ".ogg", ".mp4", ".m4v", ".webm", ".ogv"},
    {".avi", ".mov", ".mkv"},
    {".css", ".js", ".json", ".xml", ".rss", ".atom", ".csv", ".txt"},
    {".woff", ".woff2", ".ttf", ".otf", ".eot"},
)
UI_WORDS = frozenset(
    {"icon", "logo", "sprite", "favicon", "pixel", "spacer", "blank", "badge"}
    | {"emoji", "avatar", "button", "arrow", "placeholder", "spinner", "loader", "1x1"}
)
UI_SIDE_MAX_PX = 64
# A side this long on the page, or a caption of this many words, says a picture
# is content even when its file is named like a logo or an icon.
CONTENT_SIDE_MIN_PX = 200
CONTENT_CAPTION_MIN_WORDS = 4
# Page regions that hold a site's chrome (logos, buttons), not its content.
CHROME_REGIONS = ("header", "nav", "footer")

SRCSET_ATTRS = ("srcset", "data-srcset", "data-lazy-srcset")
# Attributes that name a bigger version than the displayed one.
LARGE_ATTRS = ("data-full", "data-large")
LAZY_SRC_ATTRS = ("data-src", "data-lazy-src", "data-original")
# Elements whose data-src names something other than an image.
NOT_IMAGE_HOLDERS = frozenset(
    {"img", "source", "iframe", "script", "video", "audio", "embed", "track"}
    | {"object", "link", "input", "frame"}
)
# Text fields that keep every distinct value when one image is named many times.
MULTI_TEXT_FIELDS = ("alt", "title", "figcaption")
META_IMAGE_KEYS = frozenset(
    {"og:image", "og:image:url", "og:image:secure_url", "twitter:image"}
    | {"twitter:image:src"}
)
SPA_ROOT_IDS = frozenset({"root", "app", "__next", "__nuxt", "___gatsby", "svelte"})
SPA_ROOT_ATTRS = ("data-reactroot", "ng-app", "ng-version", "data-v-app")
INVISIBLE = ("script", "style", "noscript", "template", "svg", "head")
ASKS_FOR_JS = re.compile(
    r"(enable|turn on|activate|allow|requires?|need|needs)\b.{0,40}\bjavascript"
    r"|javascript\b.{0,40}\b(required|disabled|must be|needs?|is off|enabled)",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class ImageCandidate:
    url: str  # absolute, normalised
    # "img", "srcset", "picture", "lazy", "noscript", "link", "og", "jsonld",
    # "css", "object"
    source: str
    alt: str = ""
    title: str = ""
    figcaption: str = ""
    jsonld_caption: str = ""
    jsonld_name: str = ""
    jsonld_description: str = ""
    context: str = ""  # nearest heading or paragraph
    page_title: str = ""
    width_hint: int | None = None
    height_hint: int | None = None
    # Further distinct (field, text) pairs for alt/title/figcaption when several
    # elements name this image: every caption counts, not only the first.
    more_texts: tuple[tuple[str, str], ...] = ()
    # "header", "nav" or "footer" when the element sits in the page's chrome.
    region: str = ""

    def texts(self, name: str) -> list[str]:
        """Every distinct value of the text field `name`, first one first."""
        first = getattr(self, name)
        values = [first] if first else []
        values += [text for field, text in self.more_texts if field == name]
        return values


@dataclass(frozen=True)
class PageExtract:
    url: str
    title: str
    images: list[ImageCandidate]  # one per URL, in document order
    links: list[str]  # absolute http(s) URLs of pages, in document order
    needs_js: bool


def _path_extension(url: str) -> str:
    name = unquote(urlsplit(url).path).rsplit("/", 1)[-1].lower()
    return name[name.rfind(".") :] if "." in name else ""


# --- The page -----------------------------------------------------------------


def extract_page(html: str, base_url: str) -> PageExtract:
    """Every image candidate and page link in `html`, fetched from `base_url`."""
    soup = BeautifulSoup(html, "html.parser")
    _expand_noscript(soup)
    base = _document_base(soup, base_url)
    title_tag = next(
        (t for t in soup.find_all("title") if _ancestor(t, "svg") is None), None
    )
    collector = _Collector(base, _text(title_tag) if title_tag else "")
    for element in soup.find_all(True):
        collector.visit(element)
    return PageExtract(
        url=normalize_url(base_url) or base_url,
        title=collector.page_title,
        images=list(collector.found.values()),
        links=_links(soup, base),
        needs_js=_needs_js(soup, collector.markup_images),
    )


def _expand_noscript(soup: BeautifulSoup) -> None:
    # html.parser already parses <noscript> content as markup; a parser with
    # scripting on (or an escaped fallback) leaves it as text, so parse that here.
    for noscript in soup.find_all("noscript"):
        raw = noscript.get_text()
        if noscript.find(True) is None and "<" in raw:
            fragment = BeautifulSoup(raw, "html.parser")
            noscript.clear()
            for child in list(fragment.contents):
                noscript.append(child.extract())


def _document_base(soup: BeautifulSoup, base_url: str) -> str:
    base_tag = soup.find("base", href=True)
    if isinstance(base_tag, Tag):
        resolved = normalize_url(str(base_tag["href"]), base_url)
        if resolved:
            return resolved
    return base_url


def _links(soup: BeautifulSoup, base: str) -> list[str]:
    found: dict[str, None] = {}  # an ordered set
    for anchor in soup.find_all(["a", "area"], href=True):
        href = str(anchor["href"]).strip()
        if not href or href.startswith("#"):
            continue
        url = normalize_url(href, base)
        if url and _path_extension(url) not in NON_HTML_EXTENSIONS:
            found.setdefault(url, None)
    return list(found)


class _Collector:
    """Walks the elements in document order and gathers merged candidates."""

    def __init__(self, base: str, page_title: str) -> None:
        self.base = base
        self.page_title = page_title
        self.found: dict[str, ImageCandidate] = {}
        self.markup_images = 0  # images a visitor would see, for `needs_js`
        self.last_heading: Tag | None = None
        self.last_meta_image: str | None = None
        # ids of <img> already read with a <picture>, or known to be previews
        self.handled: set[int] = set()
        # ids of elements whose inline background is a blur-up preview
        self.preview_backgrounds: set[int] = set()

    def visit(self, element: Tag) -> None:
        name = element.name
        if name in HEADINGS:
            self.last_heading = element
        if name not in NOT_IMAGE_HOLDERS and name != "picture":
            self.visit_full_size_holder(element)
        if name == "picture":
            self.visit_picture(element)
        elif name == "img" and id(element) not in self.handled:
            self.visit_img(element, [])
        elif name in ("a", "area"):
            self.visit_anchor(element)
        elif name == "meta":
            self.visit_meta(element)
        elif name == "link" and "image_src" in _attr_list(element, "rel"):
            self.add(_attr(element, "href"), "link", element)
        elif name == "script" and _is_jsonld(element):
            self.visit_jsonld(element)
        elif name == "style":
            self.visit_stylesheet(element)
        elif name == "object":
            self.visit_object(element)
        if element.has_attr("style") and id(element) not in self.preview_backgrounds:
            self.visit_style(element)

    def add(
        self, raw_url: str, source: str, element: Tag | None = None, **text: Any
    ) -> str | None:
        url = normalize_url(raw_url, self.base)
        if url is None:
            return None
        if element is not None:
            text.setdefault("figcaption", _figcaption(element))
            text.setdefault("context", _context(element, self.last_heading))
            text.setdefault("region", _region(element))
        texts = {k: _collapse(v) if isinstance(v, str) else v for k, v in text.items()}
        candidate = ImageCandidate(
            url=url, source=source, page_title=self.page_title, **texts
        )
        existing = self.found.get(url)
        self.found[url] = (
            candidate if existing is None else merge_candidates(existing, candidate)
        )
        if source in ("img", "srcset", "picture", "lazy", "css", "object") and not (
            looks_like_ui_asset(candidate)
        ):
            self.markup_images += 1
        return url

    def visit_picture(self, picture: Tag) -> None:
        img = picture.find("img")
        sources = picture.find_all("source")
        if img is None:
            img = picture  # a <picture> with only <source>s still names images
        else:
            self.handled.add(id(img))
        self.visit_img(img, sources)

    def visit_img(self, img: Tag, sources: list[Tag]) -> None:
        choice = _choose_image_url(img, sources, self.base)
        if choice is None:
            return
        url, source, width, height = choice
        if _ancestor(img, "noscript") is not None:
            source = "noscript"
        elif source == "img" and _noscript_twin(img) is not None:
            # A script swaps this preview for the <noscript> image next to it.
            return
        link = _ancestor(img, "a")
        title = _attr(img, "title") or _attr(link, "title")
        self.add(
            url,
            source,
            img,
            alt=_attr(img, "alt"),
            title=title,
            width_hint=width,
            height_hint=height,
        )

    def visit_full_size_holder(self, element: Tag) -> None:
        """An element that names its full-size image in a data attribute (blur-up
        and lazy-background scripts): that image, not the preview it shows now
        (its inline background, or the plain src of the <img> inside)."""
        raw = next(
            (
                _attr(element, attr)
                for attr in (*LARGE_ATTRS, *LAZY_SRC_ATTRS)
                if normalize_url(_attr(element, attr), self.base)
            ),
            "",
        )
        url = normalize_url(raw, self.base) if raw else None
        if url is None:
            return
        # data-large/data-full always mean an image; data-src on a <div> may
        # name anything a script loads, so only an image file counts there.
        named_large = any(_attr(element, attr) == raw for attr in LARGE_ATTRS)
        if _path_extension(url) not in IMAGE_EXTENSIONS and not (
            named_large and _path_extension(url) == ""
        ):
            return
        # A preview wrapper holds one picture; a section with a lazy background
        # and several images inside holds content, not previews.
        inner = element.find_all("img", limit=2)
        previews = [
            img
            for img in inner
            if len(inner) == 1
            and not any(img.has_attr(a) for a in (*SRCSET_ATTRS, *LAZY_SRC_ATTRS))
            and not any(img.has_attr(a) for a in LARGE_ATTRS)
        ]
        self.handled.update(id(img) for img in previews)
        self.preview_backgrounds.add(id(element))
        first = previews[0] if previews else None
        self.add(
            url,
            "lazy",
            element,
            alt=_attr(first, "alt") or _attr(element, "aria-label"),
            title=_attr(element, "title") or _attr(first, "title"),
        )

    def visit_anchor(self, anchor: Tag) -> None:
        href = normalize_url(_attr(anchor, "href"), self.base)
        if href is None or _path_extension(href) not in IMAGE_EXTENSIONS:
            return
        inner = anchor.find("img")
        title = _attr(anchor, "title") or _attr(inner, "title")
        self.add(href, "link", anchor, alt=_attr(inner, "alt"), title=title)

    def visit_object(self, obj: Tag) -> None:
        media_type = _attr(obj, "type").split(";")[0].strip().lower()
        if media_type.startswith("image/"):
            # The fallback content is what the object shows without the image.
            self.add(
                _attr(obj, "data"),
                "object",
                obj,
                alt=_attr(obj, "aria-label") or _text(obj),
                title=_attr(obj, "title"),
            )

    def visit_meta(self, meta: Tag) -> None:
        key = (_attr(meta, "property") or _attr(meta, "name")).strip().lower()
        content = _attr(meta, "content")
        if key in META_IMAGE_KEYS:
            self.last_meta_image = self.add(content, "og")
        elif self.last_meta_image is not None:
            # Structured properties describe the og:image just before them.
            extra: dict[str, Any] = {}
            if key in ("og:image:alt", "twitter:image:alt"):
                extra["alt"] = content
            elif key in ("og:image:width", "og:image:height"):
                extra[key.rsplit(":", 1)[1] + "_hint"] = _int(content)
            if extra:
                self.add(self.last_meta_image, "og", **extra)

    def visit_jsonld(self, script: Tag) -> None:
        text = script.get_text().strip()
        for wrapper in ("<!--", "-->", "<![CDATA[", "]]>"):
            text = text.replace(wrapper, "")
        try:
            data = json.loads(text, strict=False)
        except (ValueError, RecursionError):
            logger.debug("unreadable JSON-LD on %s", self.base)
            return
        for url, texts in _jsonld_images(data, None, as_image=False, depth=0):
            self.add(url, "jsonld", **texts)

    def visit_style(self, element: Tag) -> None:
        for url in _css_background_urls(_attr(element, "style")):
            alt = _attr(element, "aria-label")
            self.add(url, "css", element, alt=alt, title=_attr(element, "title"))

    def visit_stylesheet(self, style: Tag) -> None:
        """A <style> block's backgrounds, as if each rule were a style= attribute
        (which element a selector picks is not worked out: no captions)."""
        if _ancestor(style, "svg", "template") is not None:
            return
        for url in _css_background_urls(_stylesheet_declarations(style.get_text())):
            self.add(url, "css")


# --- Choosing among an image's URLs -------------------------------------------


def parse_srcset(value: str) -> list[tuple[str, int | None, float | None]]:
    """(url, width descriptor, density descriptor) for each srcset entry.

    URLs may contain commas (image CDNs use them), so split as the HTML spec
    does: a URL runs to whitespace, then descriptors run to the next comma.
    """
    entries: list[tuple[str, int | None, float | None]] = []
    pos, end = 0, len(value)
    while pos < end:
        while pos < end and (value[pos].isspace() or value[pos] == ","):
            pos += 1
        start = pos
        while pos < end and not value[pos].isspace():
            pos += 1
        url, descriptors = value[start:pos], ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start = pos
            while pos < end and value[pos] != ",":
                pos += 1
            descriptors = value[start:pos]
        if url:
            entries.append((url, *_descriptors(descriptors)))
    return entries


def _descriptors(text: str) -> tuple[int | None, float | None]:
    width: int | None = None
    density: float | None = None
    for token in text.split():
        try:
            if token.endswith("w"):
                width = int(token[:-1])
            elif token.endswith("x"):
                density = float(token[:-1])
        except ValueError:
            return None, None
    return width, density


def _choose_image_url(
    img: Tag, sources: list[Tag], base: str
) -> tuple[str, str, int | None, int | None] | None:
    """The largest URL an <img> offers: what a wide screen shows.

    Widths (w descriptors) are the only real sizes, so they win; then the
    attributes that promise a large or full version; then density (x)
    descriptors and the lazy src attributes; the plain src comes last, so a
    placeholder there never beats a lazy attribute. A <picture>'s <source>s
    are art direction (a narrow-screen crop) or format alternatives of the
    same picture: they count only when the <img> names no URL of its own, and
    then a source without a media query first.
    """
    options: list[tuple[tuple[int, float], str, str, int | None, float | None]] = []

    def offer(raw: str, source: str, width: int | None, density: float | None) -> None:
        if normalize_url(raw, base) is None:  # data: placeholders and junk
            return
        rank = (3, width) if width else (1, density or 1.0)
        options.append((rank, raw, source, width, density))

    if img.name == "img":
        for attr in SRCSET_ATTRS:
            source = "srcset" if attr == "srcset" else "lazy"
            for raw, width, density in parse_srcset(_attr(img, attr)):
                offer(raw, source, width, density)
        for attr in LARGE_ATTRS:
            if normalize_url(_attr(img, attr), base):
                options.append(((2, 0.0), _attr(img, attr), "lazy", None, None))
        for attr in LAZY_SRC_ATTRS:
            offer(_attr(img, attr), "lazy", None, None)
        offer(_attr(img, "src"), "img", None, None)
    if not options and sources:
        unconditional = [s for s in sources if not _attr(s, "media").strip()]
        for element in unconditional or sources:
            for attr in SRCSET_ATTRS:
                for raw, width, density in parse_srcset(_attr(element, attr)):
                    offer(raw, "picture", width, density)
    if not options:
        return None
    # max() keeps the first of equal ranks: lazy before src, first source first.
    rank, raw, source, width, density = max(options, key=lambda option: option[0])
    return (raw, source, *_size_hints(img, rank[0], width, density))


def _noscript_twin(img: Tag) -> Tag | None:
    """The <img> in a <noscript> right next to `img`: the full image a script
    shows in place of `img`'s preview."""
    for sibling in (img.find_next_sibling(True), img.find_previous_sibling(True)):
        if sibling is not None and sibling.name == "noscript":
            twin = sibling.find("img")
            sides = [_int(_attr(twin, a)) for a in ("width", "height")]
            # A tracking pixel in <noscript> replaces nothing.
            if twin is not None and not any(
                side is not None and side <= UI_SIDE_MAX_PX for side in sides
            ):
                return twin
    return None


def _size_hints(
    img: Tag, tier: int, width: int | None, density: float | None
) -> tuple[int | None, int | None]:
    attr_width, attr_height = _int(_attr(img, "width")), _int(_attr(img, "height"))
    if width:
        if attr_width and attr_height:
            return width, round(attr_height * width / attr_width)
        return width, None
    if tier == 2:  # a "full" version: the displayed size says nothing about it
        return None, None
    scale = density or 1.0
    return (
        round(attr_width * scale) if attr_width else None,
        round(attr_height * scale) if attr_height else None,
    )


# --- JSON-LD and CSS ----------------------------------------------------------


def _jsonld_images(
    node: Any, parent: dict[str, Any] | None, *, as_image: bool, depth: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(url, text fields) for each ImageObject and `image` value under `node`."""
    if depth > 32:  # hostile nesting
        return
    if isinstance(node, list):
        for item in node:
            yield from _jsonld_images(item, parent, as_image=as_image, depth=depth + 1)
        return
    if isinstance(node, str):
        if as_image and parent is not None:
            yield node, _jsonld_texts(parent, {})
        return
    if not isinstance(node, dict):
        return
    if as_image or "ImageObject" in _jsonld_types(node):
        url = _jsonld_str(node.get("contentUrl")) or _jsonld_str(node.get("url"))
        if url:
            texts = _jsonld_texts(node, parent or {})
            texts["jsonld_caption"] = _jsonld_str(node.get("caption"))
            texts["width_hint"] = _int(_jsonld_str(node.get("width")))
            texts["height_hint"] = _int(_jsonld_str(node.get("height")))
            yield url, texts
    for key, value in node.items():
        # A brand's logo is a UI asset that its URL alone may not give away.
        if key != "logo" and isinstance(value, (dict, list, str)):
            is_image = key == "image"
            if is_image or not isinstance(value, str):
                yield from _jsonld_images(
                    value, node, as_image=is_image, depth=depth + 1
                )


def _jsonld_types(node: dict[str, Any]) -> list[str]:
    types = node.get("@type", [])
    return (
        [types] if isinstance(types, str) else [t for t in types if isinstance(t, str)]
    )


def _jsonld_texts(node: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    # An image without its own name takes its parent's: a Product's image is that
    # product's picture.
    return {
        "jsonld_name": _jsonld_str(node.get("name")) or _jsonld_str(parent.get("name")),
        "jsonld_description": _jsonld_str(node.get("description"))
        or _jsonld_str(parent.get("description")),
    }


def _jsonld_str(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    if isinstance(value, dict):
        value = value.get("@value") or value.get("text") or value.get("value") or ""
    return str(value) if isinstance(value, (str, int, float)) else ""


CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"\s]*))\s*\)""", re.I)
MASKED_URL = re.compile(r"url\((\d+)\)")


CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)


def _stylesheet_declarations(css: str) -> str:
    """A stylesheet as one run of declarations: rule braces become separators,
    so selectors and at-rule preludes are bits without a background property."""
    return CSS_COMMENT.sub("", css).replace("{", ";").replace("}", ";")


def _css_background_urls(style: str) -> list[str]:
    # Mask the url(...) values first: data: URLs contain ";" and would break the
    # split into declarations.
    urls: list[str] = []

    def mask(match: re.Match[str]) -> str:
        urls.append(next(group for group in match.groups() if group is not None))
        return f"url({len(urls) - 1})"

    masked = CSS_URL.sub(mask, style)
    found = []
    for declaration in masked.split(";"):
        prop, _, value = declaration.partition(":")
        if prop.strip().lower() in ("background", "background-image"):
            found.extend(urls[int(i)] for i in MASKED_URL.findall(value))
    return found


# --- Text ---------------------------------------------------------------------


def _region(element: Tag) -> str:
    """The page chrome region (header, nav, footer) `element` sits in, if any."""
    region = _ancestor(element, *CHROME_REGIONS)
    if region is None:
        return ""
    # An <article>'s own header or footer is part of the content (its hero
    # picture), not the site's chrome.
    if region.name != "nav" and _ancestor(region, "article", "main", "section"):
        return ""
    return region.name


def _figcaption(element: Tag) -> str:
    figure = element if element.name == "figure" else _ancestor(element, "figure")
    caption = figure.find("figcaption") if figure else None
    return _text(caption) if caption else ""


def _context(element: Tag, last_heading: Tag | None) -> str:
    """The nearest heading or paragraph that belongs with `element`.

    An enclosing paragraph first; then, from the innermost container outwards,
    a heading before the element or a paragraph (or heading) after it inside
    that container; failing all that, the last heading before it on the page.
    """
    paragraph = _ancestor(element, "p")
    if paragraph is not None and _text(paragraph):
        return _text(paragraph)
    for scope in _scopes(element):
        if last_heading is not None and _inside(last_heading, scope):
            return _text(last_heading)
        following = _next_text_block(element, scope)
        if following is not None:
            return _text(following)
    return _text(last_heading) if last_heading is not None else ""


def _inside(element: Tag, scope: Tag) -> bool:
    # Identity, not `in`: bs4 compares tags by their markup.
    return any(parent is scope for parent in element.parents)


def _scopes(element: Tag) -> Iterator[Tag]:
    if element.parent is not None and element.parent.name != "[document]":
        yield element.parent
    for ancestor in element.parents:
        if ancestor.name in CONTEXT_SCOPES and ancestor is not element.parent:
            yield ancestor


def _next_text_block(element: Tag, scope: Tag) -> Tag | None:
    """The first <p> or heading after `element` within `scope`, unless another
    image comes first (then the text is that image's)."""
    wanted = {"p", *HEADINGS, "img", "picture", "figure"}
    node: Tag | None = element
    while node is not None and node is not scope:
        for sibling in node.next_siblings:
            if not isinstance(sibling, Tag):
                continue
            found = next(
                (t for t in _self_and_descendants(sibling) if t.name in wanted), None
            )
            if found is not None:
                return (
                    found if found.name in ("p", *HEADINGS) and _text(found) else None
                )
        node = node.parent
    return None


# bs4's find_parent()/find() build a filter per call, which dominated the
# profile of a large gallery; plain walks are several times faster.
def _ancestor(element: Tag | NavigableString, *names: str) -> Tag | None:
    return next((p for p in element.parents if p.name in names), None)


def _self_and_descendants(element: Tag) -> Iterator[Tag]:
    yield element
    yield from (d for d in element.descendants if isinstance(d, Tag))


def _text(element: Tag) -> str:
    return _collapse(element.get_text(" "))[:CONTEXT_MAX_CHARS]


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _attr(element: Tag | None, name: str) -> str:
    value = element.get(name) if element is not None else None
    if isinstance(value, list):  # multi-valued attributes such as class
        return " ".join(value)
    return value or ""


def _attr_list(element: Tag, name: str) -> list[str]:
    return [v.lower() for v in _attr(element, name).split()]


def _int(value: str) -> int | None:
    match = re.fullmatch(r"\s*(\d{1,6})(?:\.\d+)?\s*(?:px)?\s*", value or "")
    return int(match.group(1)) if match else None


def merge_candidates(kept: ImageCandidate, new: ImageCandidate) -> ImageCandidate:
    """`kept` with its empty fields filled from `new` (url and source stay), and
    every further distinct alt, title and figcaption of `new` kept as well."""
    changes: dict[str, Any] = {
        f.name: getattr(new, f.name)
        for f in fields(ImageCandidate)
        # The first element's region stands: filling it from a later one
        # would make a picture shown in the content into chrome.
        if f.name not in ("url", "source", "more_texts", "region")
        and getattr(kept, f.name) in ("", None)
        and getattr(new, f.name) not in ("", None)
    }
    more = list(kept.more_texts)
    for name in MULTI_TEXT_FIELDS:
        known = set(kept.texts(name)) | {changes.get(name, "")}
        for text in new.texts(name):
            if text not in known:
                known.add(text)
                more.append((name, text))
    if len(more) != len(kept.more_texts):
        changes["more_texts"] = tuple(more)
    return replace(kept, **changes) if changes else kept


def _is_jsonld(script: Tag) -> bool:
    return _attr(script, "type").split(";")[0].strip().lower() == "application/ld+json"


# --- Judgements ---------------------------------------------------------------


def looks_like_ui_asset(candidate: ImageCandidate) -> bool:
    """Icons, logos, sprites, spacers, tracking pixels and the like."""
    return ui_asset_reason(candidate) is not None


def ui_asset_reason(candidate: ImageCandidate) -> str | None:
    """Why `candidate` is not content worth downloading, or None.

    Size and context decide, not the name alone: a file named like a logo or an
    icon is skipped only when nothing says it is content (a side of at least
    CONTENT_SIDE_MIN_PX on the page, or a caption of a few words), or when it
    sits in the page's header, nav or footer.
    """
    url = candidate.url
    if url[:5].lower() == "data:":
        return "inline data: URL (a placeholder or icon)"
    path = unquote(urlsplit(url).path).lower()
    if path.endswith((".svg", ".svgz")):
        return "not a raster image (SVG)"
    if path.endswith(".ico"):
        return "an icon file (.ico)"
    sides = [s for s in (candidate.width_hint, candidate.height_hint) if s]
    if any(side <= UI_SIDE_MAX_PX for side in sides):
        shown = "×".join(str(s) for s in sides)
        return f"icon-sized on the page ({shown} px; {UI_SIDE_MAX_PX} px or less)"
    word = next(
        (t for t in re.split(r"[^a-z0-9]+", path) if _is_ui_word(t)),
        None,
    )
    if word is None:
        return None
    if candidate.region:
        return f"UI asset: named '{word}', in the page's {candidate.region}"
    if any(side >= CONTENT_SIDE_MIN_PX for side in sides) or _is_described(candidate):
        return None
    return f"UI asset: named '{word}', with no size or caption saying it is content"


def _is_described(candidate: ImageCandidate) -> bool:
    texts = [
        *candidate.texts("alt"),
        *candidate.texts("title"),
        *candidate.texts("figcaption"),
        candidate.jsonld_caption,
    ]
    return any(len(text.split()) >= CONTENT_CAPTION_MIN_WORDS for text in texts)


def _is_ui_word(token: str) -> bool:
    if token in UI_WORDS:  # "1x1" keeps its digits
        return True
    stem = token.rstrip("0123456789")  # icon32, arrow2
    if stem.endswith("s") and stem[:-1] in UI_WORDS:  # icons, logos
        stem = stem[:-1]
    return stem in UI_WORDS or stem.endswith("logo")  # sitelogo, headerlogo


def _needs_js(soup: BeautifulSoup, markup_images: int) -> bool:
    """Whether the page probably builds its content with scripts."""
    for noscript in soup.find_all("noscript"):
        if ASKS_FOR_JS.search(noscript.get_text(" ")):
            return True
    root = _spa_root(soup)
    if root is not None and (markup_images == 0 or _is_empty(root)):
        return True
    if markup_images:
        return False
    scripts = [s for s in soup.find_all("script") if not _is_jsonld(s)]
    if soup.find("script", id="__NEXT_DATA__") is not None:
        return True
    return bool(scripts) and _visible_text_length(soup.body or soup) < 200


def _spa_root(soup: BeautifulSoup) -> Tag | None:
    for element in soup.find_all(True):
        if _attr(element, "id") in SPA_ROOT_IDS or any(
            element.has_attr(attr) for attr in SPA_ROOT_ATTRS
        ):
            return element
    return None


def _is_empty(element: Tag) -> bool:
    return element.find("img") is None and _visible_text_length(element) < 50


def _visible_text_length(root: Tag) -> int:
    return sum(
        len(text.strip())
        for text in root.find_all(string=True)
        if type(text) is NavigableString and _ancestor(text, *INVISIBLE) is None
    )
