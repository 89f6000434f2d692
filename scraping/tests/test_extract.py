from __future__ import annotations

from typing import Any

import pytest

from scraping.extract import (
    ImageCandidate,
    PageExtract,
    extract_page,
    looks_like_ui_asset,
    parse_srcset,
    ui_asset_reason,
)
from scraping.urls import normalize_url, same_site

BASE = "https://cards.example/decks/tarot/"
PIXEL = "data:image/gif;base64,R0lGODlhAQABAAAAACw="


def make_candidate(url: str, source: str = "img", **fields: Any) -> ImageCandidate:
    fields.setdefault("page_title", "Tarot")
    return ImageCandidate(url=url, source=source, **fields)


def page(body: str, head: str = "") -> str:
    return f"<html><head><title>Tarot</title>{head}</head><body>{body}</body></html>"


def images(body: str, head: str = "") -> list[ImageCandidate]:
    return extract_page(page(body, head), BASE).images


# --- URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("HTTP://Cards.EXAMPLE/A", None, "http://cards.example/A"),
        ("https://cards.example:443/x", None, "https://cards.example/x"),
        ("http://cards.example:80/x", None, "http://cards.example/x"),
        ("http://cards.example:8080/x", None, "http://cards.example:8080/x"),
        ("https://cards.example", None, "https://cards.example/"),
        ("https://cards.example/a#frag", None, "https://cards.example/a"),
        ("https://cards.example/a/./b/../c", None, "https://cards.example/a/c"),
        (
            "https://cards.example/%7euser/%41%2f%3a",
            None,
            "https://cards.example/~user/A%2F%3A",
        ),
        (
            "https://cards.example/a b/ü?q=ä b",
            None,
            "https://cards.example/a%20b/%C3%BC?q=%C3%A4%20b",
        ),
        ("https://cards.example/100%", None, "https://cards.example/100%25"),
        ("https://b%C3%BCcher.example/", None, "https://xn--bcher-kva.example/"),
        ("http://[::1]:8000/", None, "http://[::1]:8000/"),
        (
            "  https://cards.example/\tfool\n.jpg ",
            None,
            "https://cards.example/fool.jpg",
        ),
        ("fool.jpg", BASE, "https://cards.example/decks/tarot/fool.jpg"),
        ("../../img/fool.jpg", BASE, "https://cards.example/img/fool.jpg"),
        ("/img/fool.jpg?w=2#x", BASE, "https://cards.example/img/fool.jpg?w=2"),
        ("//cdn.example/fool.jpg", BASE, "https://cdn.example/fool.jpg"),
        ("?page=2", BASE, "https://cards.example/decks/tarot/?page=2"),
        ("\\\\cdn.example\\fool.jpg", BASE, "https://cdn.example/fool.jpg"),
    ],
)
def test_normalize_url(url: str, base: str | None, expected: str) -> None:
    assert normalize_url(url, base) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "javascript:void(0)",
        "mailto:reader@cards.example",
        "tel:+4912345",
        PIXEL,
        "ftp://cards.example/fool.jpg",
        "fool.jpg",  # relative, and no base to resolve it against
        "http://cards.example:99999/",
        "http://[::1/",
        "http://bad host.example/",
        "http:///path-only",
    ],
)
def test_normalize_url_refuses_what_is_not_an_http_url(url: str) -> None:
    assert normalize_url(url) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://cards.example/other", True),
        ("http://cards.example:8080/", True),
        ("https://www.cards.example/", True),
        ("https://CARDS.example./x", True),
        ("https://cdn.cards.example/", False),
        ("https://cards.example.evil/", False),
        ("https://example/", False),
        ("mailto:x@cards.example", False),
        ("not a url", False),
    ],
)
def test_same_site(url: str, expected: bool) -> None:
    assert same_site(url, "https://cards.example/decks/") is expected
    assert same_site(url, "https://www.cards.example/") is expected


# --- Discovery ----------------------------------------------------------------


def test_img_with_its_captions() -> None:
    found = images(
        """<article>
          <h2>The   Major Arcana</h2>
          <figure>
            <img src="fool.jpg" alt=" The Fool " title="0" width="300" height="500">
            <figcaption>The Fool, <em>card 0</em></figcaption>
          </figure>
        </article>"""
    )

    assert found == [
        make_candidate(
            f"{BASE}fool.jpg",
            alt="The Fool",
            title="0",
            figcaption="The Fool, card 0",
            context="The Major Arcana",
            width_hint=300,
            height_hint=500,
        )
    ]


def test_srcset_gives_the_widest_candidate() -> None:
    found = images(
        """<img src="fool-400.jpg" alt="Fool" width="400" height="600"
             srcset="fool-400.jpg 400w, fool-1600.jpg 1600w, fool-800.jpg 800w">"""
    )

    assert found == [
        make_candidate(
            f"{BASE}fool-1600.jpg",
            "srcset",
            alt="Fool",
            width_hint=1600,
            height_hint=2400,
        )
    ]


def test_srcset_by_density_and_with_commas_in_urls() -> None:
    found = images(
        """<img src="a.jpg" srcset="a.jpg, a@3x.jpg 3x, a@2x.jpg 2x"
                width="50" height="40">
        <img srcset="https://cdn.example/w_100,h_100/b.jpg 100w,
                     https://cdn.example/w_900,h_900/b.jpg 900w">"""
    )

    assert found == [
        make_candidate(f"{BASE}a@3x.jpg", "srcset", width_hint=150, height_hint=120),
        make_candidate(
            "https://cdn.example/w_900,h_900/b.jpg", "srcset", width_hint=900
        ),
    ]


def test_parse_srcset() -> None:
    assert parse_srcset(
        " a.jpg 1x,b.jpg 2x , c,d.jpg 640w 480h, e.jpg,, f.jpg bogus"
    ) == [
        ("a.jpg", None, 1.0),
        ("b.jpg", None, 2.0),
        ("c,d.jpg", 640, None),
        ("e.jpg", None, None),
        ("f.jpg", None, None),
    ]


def test_picture_takes_the_imgs_own_best_candidate_not_a_source() -> None:
    """What a wide screen shows: the <img>'s largest srcset/src. A <source> is an
    art-direction crop or a format alternative of the same picture."""
    found = images(
        f"""<picture>
          <source media="(max-width: 600px)" srcset="tower-crop.jpg 600w">
          <source type="image/webp"
                  srcset="tower-1200.webp 1200w, tower-2400.webp 2400w">
          <img src="tower.jpg" srcset="tower-1800.jpg 1800w" alt="The Tower">
        </picture>
        <picture>
          <source media="(max-width: 799px)" srcset="sun-crop.jpg 480w">
          <img src="sun.jpg" alt="The Sun">
        </picture>
        <picture>
          <source type="image/avif" srcset="star.avif">
          <img src="star.jpg" alt="The Star">
        </picture>
        <picture>
          <source media="(max-width: 600px)" srcset="moon-crop.jpg 600w">
          <source srcset="moon-1200.jpg 1200w, moon-2400.jpg 2400w">
          <img src="{PIXEL}" alt="The Moon">
        </picture>"""
    )

    assert found == [
        make_candidate(
            f"{BASE}tower-1800.jpg", "srcset", alt="The Tower", width_hint=1800
        ),
        make_candidate(f"{BASE}sun.jpg", "img", alt="The Sun"),
        make_candidate(f"{BASE}star.jpg", "img", alt="The Star"),
        # The img names no URL: the sources without a media query, largest.
        make_candidate(
            f"{BASE}moon-2400.jpg", "picture", alt="The Moon", width_hint=2400
        ),
    ]


@pytest.mark.parametrize(
    ("attributes", "expected_url", "hints"),
    [
        (f'src="{PIXEL}" data-src="moon.jpg"', "moon.jpg", (200, 300)),
        ('src="/img/1x1.gif" data-lazy-src="moon.jpg"', "moon.jpg", (200, 300)),
        ('src="/img/blank.gif" data-original="moon.jpg"', "moon.jpg", (200, 300)),
        ('src="moon-thumb.jpg" data-large="moon-large.jpg"', "moon-large.jpg", None),
        ('src="moon-thumb.jpg" data-full="moon-full.jpg"', "moon-full.jpg", None),
        (
            f'src="{PIXEL}" data-srcset="moon-300.jpg 300w, moon-900.jpg 900w"',
            "moon-900.jpg",
            (900, 1350),
        ),
        (
            f'src="{PIXEL}" data-lazy-srcset="moon-a.jpg 1x, moon-b.jpg 2x"',
            "moon-b.jpg",
            (400, 600),
        ),
    ],
)
def test_lazy_attributes_win_over_a_placeholder_src(
    attributes: str, expected_url: str, hints: tuple[int, int] | None
) -> None:
    found = images(f'<img {attributes} alt="The Moon" width="200" height="300">')

    width, height = hints or (None, None)
    assert found == [
        make_candidate(
            BASE + expected_url,
            "lazy",
            alt="The Moon",
            width_hint=width,
            height_hint=height,
        )
    ]


def test_an_img_with_only_a_data_url_is_no_candidate() -> None:
    assert images(f'<img src="{PIXEL}" alt="inline">') == []


def test_noscript_fallbacks() -> None:
    found = images(
        f"""<figure>
          <img class="lazy" src="{PIXEL}" alt="Sun">
          <noscript><img src="sun.jpg" alt="The Sun"></noscript>
          <figcaption>XIX</figcaption>
        </figure>
        <noscript>&lt;img src="world.jpg" alt="The World"&gt;</noscript>"""
    )

    assert found == [
        make_candidate(f"{BASE}sun.jpg", "noscript", alt="The Sun", figcaption="XIX"),
        make_candidate(f"{BASE}world.jpg", "noscript", alt="The World"),
    ]


def test_links_straight_to_image_files() -> None:
    found = images(
        """<section><h3>Lovers</h3>
          <a href="/full/lovers.JPG?download=1" title="The Lovers, full size">
            <img src="/thumbs/lovers.jpg" alt="VI">
          </a>
          <a href="/cards/lovers.html">About the card</a>
          <a href="lovers.webp">webp</a>
        </section>"""
    )

    assert found == [
        make_candidate(
            "https://cards.example/full/lovers.JPG?download=1",
            "link",
            alt="VI",
            title="The Lovers, full size",
            context="Lovers",
        ),
        make_candidate(
            "https://cards.example/thumbs/lovers.jpg",
            alt="VI",
            title="The Lovers, full size",  # the link's title names the image
            context="Lovers",
        ),
        make_candidate(f"{BASE}lovers.webp", "link", context="Lovers"),
    ]


def test_open_graph_and_twitter_images() -> None:
    found = images(
        "",
        head="""
        <meta property="og:image" content="/social/deck.jpg">
        <meta property="og:image:alt" content="The whole deck">
        <meta property="og:image:width" content="1200">
        <meta property="og:image:height" content="630">
        <meta property="og:image:url" content="/social/deck.jpg">
        <meta name="twitter:image" content="https://cdn.example/deck-tw.jpg">
        <meta name="twitter:image:alt" content="Deck on Twitter">
        <meta property="og:title" content="not an image">""",
    )

    assert found == [
        make_candidate(
            "https://cards.example/social/deck.jpg",
            "og",
            alt="The whole deck",
            width_hint=1200,
            height_hint=630,
        ),
        make_candidate("https://cdn.example/deck-tw.jpg", "og", alt="Deck on Twitter"),
    ]


JSONLD = """<script type="application/ld+json">
{
  "@context": "https://schema.org",
  "@graph": [
    {"@type": "WebPage", "@id": "https://cards.example/#page",
     "primaryImageOfPage": {"@id": "https://cards.example/#primary"}},
    {"@type": "ImageObject", "@id": "https://cards.example/#primary",
     "url": "https://cards.example/page-of-the-image",
     "contentUrl": "/img/hermit.jpg", "caption": "The Hermit, IX",
     "name": "Hermit", "description": "An old man with a lantern",
     "width": "1000", "height": {"@type": "QuantitativeValue", "value": 1600}},
    {"@type": "Organization", "name": "Cards",
     "logo": {"@type": "ImageObject", "url": "/brand.png"}},
    {"@type": ["Product", "Thing"], "name": "Wheel of Fortune",
     "description": "Card X",
     "image": ["/img/wheel.jpg", {"url": "/img/wheel-back.jpg", "caption": "Back"}],
     "offers": {"@type": "Offer",
                "itemOffered": {"@type": "CreativeWork", "name": "Print",
                                "image": "/img/wheel-print.jpg"}}}
  ]
}
</script>
<script type="application/ld+json">{"@type": "ImageObject",
  "contentUrl": "/img/justice.jpg",
  "caption": {"@type": "TextObject", "text": "Justice"}}</script>
<script type="application/ld+json">{ not json, </script>"""


def test_json_ld_images() -> None:
    found = images("", head=JSONLD)

    assert found == [
        make_candidate(
            "https://cards.example/img/hermit.jpg",
            "jsonld",
            jsonld_caption="The Hermit, IX",
            jsonld_name="Hermit",
            jsonld_description="An old man with a lantern",
            width_hint=1000,
            height_hint=1600,
        ),
        make_candidate(
            "https://cards.example/img/wheel.jpg",
            "jsonld",
            jsonld_name="Wheel of Fortune",
            jsonld_description="Card X",
        ),
        make_candidate(
            "https://cards.example/img/wheel-back.jpg",
            "jsonld",
            jsonld_caption="Back",
            jsonld_name="Wheel of Fortune",
            jsonld_description="Card X",
        ),
        make_candidate(
            "https://cards.example/img/wheel-print.jpg", "jsonld", jsonld_name="Print"
        ),
        make_candidate(
            "https://cards.example/img/justice.jpg", "jsonld", jsonld_caption="Justice"
        ),
    ]


def test_inline_css_backgrounds() -> None:
    found = images(
        f"""<div class="card" title="Strength"
                 style="background-image: url('strength.jpg')">
        </div>
        <div role="img" aria-label="Temperance"
             style='color: red; background: #000 url("temperance.png") no-repeat'>
        </div>
        <div style="background-image: url({PIXEL}), url(chariot.webp);
                    mask-image: url(mask.png)"></div>
        <span style="list-style-image: url(bullet.png)">x</span>"""
    )

    assert found == [
        make_candidate(f"{BASE}strength.jpg", "css", title="Strength"),
        make_candidate(f"{BASE}temperance.png", "css", alt="Temperance"),
        make_candidate(f"{BASE}chariot.webp", "css"),
    ]


def test_style_block_backgrounds_count_like_inline_ones() -> None:
    found = images(
        """<div class="hero"></div>""",
        head="""<style>
          /* .old { background: url(commented-out.jpg) } */
          .hero { background-image: url("hero.jpg"); color: #333 }
          @media (min-width: 800px) { .wide{background:#000 url(wide.png) no-repeat} }
          a:hover { background: none }
          @font-face { font-family: Tarot; src: url(tarot.woff2) format("woff2"); }
          li { list-style-image: url(bullet.png) }
        </style>""",
    )

    assert found == [
        make_candidate(f"{BASE}hero.jpg", "css"),
        make_candidate(f"{BASE}wide.png", "css"),
    ]


def test_object_of_an_image_type_is_an_image() -> None:
    found = images(
        """<object data="chart.png" type="image/png">A chart of the suits</object>
        <object data="deck.svg" type="image/svg+xml"></object>
        <object data="intro.swf" type="application/x-shockwave-flash"></object>
        <object data="page.html"></object>"""
    )

    assert [(c.url, c.source, c.alt) for c in found] == [
        (f"{BASE}chart.png", "object", "A chart of the suits"),
        (f"{BASE}deck.svg", "object", ""),
    ]
    assert ui_asset_reason(found[1]) == "not a raster image (SVG)"


def test_blur_up_and_lazy_patterns_name_the_full_image_only() -> None:
    found = images(
        f"""<img class="lazyload" src="fox-tiny.jpg" alt="Fox">
        <noscript><img src="fox.jpg" alt="Fox"></noscript>
        <div class="progressive" data-large="hare.jpg"
             style="background-image: url(hare-tiny.jpg)" aria-label="Hare"></div>
        <a class="progressive replace" data-original="deer.jpg" href="/deer/">
          <img src="deer-tiny.jpg" class="preview" alt="Deer"></a>
        <figure data-src="heron.jpg"><img src="heron-tiny.jpg" alt="Heron">
          <figcaption>A grey heron</figcaption></figure>
        <img src="{PIXEL}" data-src="owl.jpg" alt="Owl">
        <div data-src="/widgets/map"><img src="map.jpg" alt="Map"></div>
        <section data-src="sea.jpg"><img src="gull.jpg" alt="Gull">
          <img src="tern.jpg" alt="Tern"></section>"""
    )

    assert [(c.url.removeprefix(BASE), c.alt) for c in found] == [
        ("fox.jpg", "Fox"),
        ("hare.jpg", "Hare"),
        ("deer.jpg", "Deer"),
        ("heron.jpg", "Heron"),
        ("owl.jpg", "Owl"),
        ("map.jpg", "Map"),  # data-src that names no image: the img stands
        # A lazy background behind several pictures: all of them are content.
        ("sea.jpg", ""),
        ("gull.jpg", "Gull"),
        ("tern.jpg", "Tern"),
    ]
    assert found[3].figcaption == "A grey heron"


def test_duplicates_merge_into_the_first_candidate() -> None:
    found = images(
        """<figure><img src="/img/death.jpg" alt="Death"><figcaption>XIII</figcaption>
        </figure>
        <a href="/img/death.jpg" title="Death, full size">Full size</a>
        <img src="/img/death.jpg#again" alt="Another alt" width="900" height="1400">""",
        head='<meta property="og:image" content="https://cards.example/img/death.jpg">',
    )

    assert found == [
        make_candidate(
            "https://cards.example/img/death.jpg",
            "og",
            alt="Death",
            title="Death, full size",
            figcaption="XIII",
            width_hint=900,
            height_hint=1400,
            more_texts=(("alt", "Another alt"),),
        )
    ]


def test_every_caption_of_an_image_named_many_times_is_kept_once() -> None:
    (found,) = images(
        """<figure><img src="/img/sun.jpg" alt="The Sun"><figcaption>XIX</figcaption>
        </figure>
        <a href="/img/sun.jpg" title="The Sun, full size"><img src="/img/sun.jpg"
           alt="Sun card" title="Tarot XIX"></a>
        <figure><img src="/img/sun.jpg" alt="The Sun"><figcaption>Rider-Waite
        </figcaption></figure>"""
    )

    assert found.texts("alt") == ["The Sun", "Sun card"]
    assert found.texts("title") == ["The Sun, full size", "Tarot XIX"]
    assert found.texts("figcaption") == ["XIX", "Rider-Waite"]


def test_base_href_resolves_relative_urls() -> None:
    result = extract_page(
        page('<img src="emperor.jpg"><a href="next.html">next</a>', head=""),
        BASE,
    )
    with_base = extract_page(
        page(
            '<img src="emperor.jpg"><a href="next.html">next</a>',
            head='<base href="https://static.example/v2/">',
        ),
        BASE,
    )

    assert [c.url for c in result.images] == [f"{BASE}emperor.jpg"]
    assert [c.url for c in with_base.images] == [
        "https://static.example/v2/emperor.jpg"
    ]
    assert with_base.links == ["https://static.example/v2/next.html"]
    assert with_base.url == BASE


# --- Text around images -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "context"),
    [
        # The paragraph the image sits in.
        (
            '<p>Drawn in  1909 <img src="x.jpg"> by Pamela</p>',
            "Drawn in 1909 by Pamela",
        ),
        # The heading before it in its card, not the page's heading.
        (
            '<h1>Deck</h1><article><h2>The Hierophant</h2><img src="x.jpg"></article>',
            "The Hierophant",
        ),
        # The paragraph after it in its card.
        (
            '<h1>Deck</h1><div class="card"><img src="x.jpg"><p>Card V</p></div>',
            "Card V",
        ),
        # A heading below the image in a list item.
        (
            '<h1>Deck</h1><ul><li><a href="v"><img src="x.jpg"></a><h3>V</h3></li>',
            "V",
        ),
        # No container with words: the last heading before it on the page.
        ('<h1>Deck</h1><div><div><img src="x.jpg"></div></div>', "Deck"),
        # The next paragraph belongs to the next image.
        ('<div><img src="x.jpg"><img src="y.jpg"><p>About y</p></div>', ""),
        ('<img src="x.jpg">', ""),
    ],
)
def test_context(body: str, context: str) -> None:
    assert images(body)[0].context == context


def test_context_is_truncated() -> None:
    found = images(f'<p>{"word " * 300}<img src="x.jpg"></p>')

    assert 490 < len(found[0].context) <= 500
    assert set(found[0].context.split()) == {"word"}


def test_page_title_ignores_svg_titles() -> None:
    html = """<html><body><svg><title>icon</title></svg>
    <img src="x.jpg"></body></html>"""

    assert extract_page(html, BASE) == PageExtract(
        url=BASE,
        title="",
        images=[make_candidate(f"{BASE}x.jpg", page_title="")],
        links=[],
        needs_js=False,
    )


# --- Links --------------------------------------------------------------------


def test_links() -> None:
    result = extract_page(
        page(
            """<a href="../">Decks</a>
            <a href="empress.html#meaning">Empress</a>
            <a href="empress.html">Empress again</a>
            <a href="https://WWW.cards.example:443/about">About</a>
            <a href="https://elsewhere.example/buy">Buy</a>
            <a href="#top">Top</a> <a href="">Here</a>
            <a href="javascript:openMenu()">Menu</a>
            <a href="mailto:shop@cards.example">Mail</a> <a href="tel:+441234">Call</a>
            <a href="data:text/html,hi">Data</a> <a href="ftp://cards.example/">FTP</a>
            <a href="empress.JPG">Image</a> <a href="/deck.pdf?v=2">PDF</a>
            <a href="/deck.zip">Zip</a> <a href="/intro.mp4">Video</a>
            <a>No href</a>
            <map><area href="/map/north" alt="North"></map>"""
        ),
        BASE,
    )

    assert result.links == [
        "https://cards.example/decks/",
        f"{BASE}empress.html",
        "https://www.cards.example/about",
        "https://elsewhere.example/buy",
        "https://cards.example/map/north",
    ]
    same = [u for u in result.links if same_site(u, BASE)]
    assert same == result.links[:3] + result.links[4:]


# --- UI assets ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://cards.example/static/icons/cart.png",
        "https://cards.example/img/icon-32.png",
        "https://cards.example/favicon-96x96.png",
        "https://cards.example/assets/siteLogo.png",
        "https://cards.example/logo_white.jpg",
        "https://cards.example/css/sprite.png",
        "https://cards.example/img/spacer.gif",
        "https://cards.example/img/blank.gif",
        "https://cards.example/t/pixel.gif?id=1",
        "https://cards.example/1x1.gif",
        "https://cards.example/badges/new.png",
        "https://cards.example/emoji/smile.png",
        "https://cards.example/users/7/avatar.jpg",
        "https://cards.example/ui/button-buy.png",
        "https://cards.example/ui/arrow_left.png",
        "https://cards.example/img/placeholder.jpg",
        "https://cards.example/deck/fool.svg",
        "https://cards.example/favicon.ico",
        PIXEL,
    ],
)
def test_ui_assets_by_url(url: str) -> None:
    assert looks_like_ui_asset(make_candidate(url)) is True


@pytest.mark.parametrize(
    ("width", "height"),
    [(1, 1), (64, 64), (32, None), (None, 48), (1200, 40)],
)
def test_ui_assets_by_size(width: int | None, height: int | None) -> None:
    found = make_candidate(
        "https://cards.example/img/fool.jpg", width_hint=width, height_hint=height
    )

    assert looks_like_ui_asset(found) is True


@pytest.mark.parametrize(
    "url",
    [
        "https://cards.example/img/fool.jpg",
        "https://cards.example/iconic-cards/fool.jpg",
        "https://cards.example/catalogue/the-badger.png",
        "https://cards.example/birds/sparrow.webp",
        "https://cards.example/pixelart/tower.png",
        "https://cards.example/img/fool.jpg?icon=1",
    ],
)
def test_real_images_are_not_ui_assets(url: str) -> None:
    assert looks_like_ui_asset(make_candidate(url, width_hint=65)) is False
    assert looks_like_ui_asset(make_candidate(url)) is False


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"url": "https://cards.example/deck/fool.svg"}, "not a raster image (SVG)"),
        ({"url": "https://cards.example/favicon.ico"}, "an icon file (.ico)"),
        (
            {"url": "https://cards.example/a.jpg", "width_hint": 16, "height_hint": 16},
            "icon-sized on the page (16×16 px; 64 px or less)",
        ),
        (
            {"url": "https://cards.example/img/site-logo.png", "alt": "Acme"},
            "UI asset: named 'logo', with no size or caption saying it is content",
        ),
        (
            {
                "url": "https://cards.example/img/logo-mug.jpg",
                "alt": "A white ceramic mug with our logo",
                "region": "header",
            },
            "UI asset: named 'logo', in the page's header",
        ),
    ],
)
def test_every_ui_skip_says_its_true_reason(
    fields: dict[str, Any], reason: str
) -> None:
    assert ui_asset_reason(make_candidate(**fields)) == reason


@pytest.mark.parametrize(
    "fields",
    [
        {"width_hint": 400, "height_hint": 400},
        {"alt": "A white ceramic mug printed with our logo"},
        {"figcaption": "The mug, in three colours and two sizes"},
        {"title": "Our logo mug on a kitchen table"},
    ],
)
def test_a_content_picture_named_like_a_logo_is_kept(fields: dict[str, Any]) -> None:
    found = make_candidate("https://cards.example/shop/logo-mug.jpg", **fields)

    assert ui_asset_reason(found) is None


def test_page_chrome_is_found_from_the_markup() -> None:
    found = images(
        """<header><a href="/"><img src="/img/logo.png" alt="Cards"></a></header>
        <main><img src="/img/logo-tee.jpg" alt="A t-shirt printed with our logo"
        width="400" height="400"></main>
        <footer><img src="/img/payment-icons.png" alt="We take cards"></footer>
        <article><header><img src="/img/logo-launch.jpg" alt="Launch"></header>
        </article>"""
    )

    assert [(c.url.rsplit("/", 1)[1], c.region) for c in found] == [
        ("logo.png", "header"),
        ("logo-tee.jpg", ""),
        ("payment-icons.png", "footer"),
        ("logo-launch.jpg", ""),  # an article's header is content
    ]
    assert [looks_like_ui_asset(c) for c in found] == [True, False, True, True]


# --- needs_js -----------------------------------------------------------------


@pytest.mark.parametrize(
    "html",
    [
        # A React shell.
        """<html><head><script src="/static/js/main.js"></script></head>
        <body><noscript>You need to enable JavaScript to run this app.</noscript>
        <div id="root"></div></body></html>""",
        # A Vue shell with a logo outside the empty app root.
        """<html><body><img src="/img/brand.png" alt="Cards" width="300" height="90">
        <div id="app"></div><script src="/app.js"></script></body></html>""",
        # Next.js data and no images in the markup.
        """<html><body><div id="__next"><p>Loading gallery of all seventy-eight cards
        and their meanings...</p></div>
        <script id="__NEXT_DATA__" type="application/json">{"props": {}}</script>
        </body></html>""",
        # AngularJS.
        """<html ng-app="deck"><body><h1>{{ title }}</h1>
        <script src="angular.js"></script></body></html>""",
        # Next.js data on a page without a root element.
        """<html><body><p>Gallery</p>
        <script id="__NEXT_DATA__" type="application/json">{}</script></body></html>""",
        # Almost nothing to read, only scripts.
        """<html><body><header>Cards</header><main></main>
        <script src="/bundle.js"></script></body></html>""",
        # A site that says it needs JavaScript.
        """<html><body><p>Our deck gallery</p><img src="/cards/fool.jpg">
        <noscript><p>This site requires JavaScript.</p></noscript></body></html>""",
    ],
)
def test_needs_js(html: str) -> None:
    assert extract_page(html, BASE).needs_js is True


@pytest.mark.parametrize(
    "html",
    [
        # A static gallery with an analytics script and a lazy-image fallback.
        f"""<html><body><h1>Deck</h1><img src="{PIXEL}" data-src="fool.jpg">
        <noscript><img src="fool.jpg"></noscript>
        <script src="/analytics.js"></script></body></html>""",
        # A long article without images, scripts and all.
        f"""<html><body><article><p>{"The Major Arcana are trumps. " * 20}</p>
        </article><script>track()</script></body></html>""",
        # A server-rendered Next.js page.
        """<html><body><div id="__next"><h1>Deck</h1>
        <img src="/_next/image?url=%2Ffool.jpg&w=1080" alt="Fool"></div>
        <script id="__NEXT_DATA__" type="application/json">{}</script></body></html>""",
        # No scripts at all.
        "<html><body><p>Nothing here.</p></body></html>",
        # An empty noscript and a tracking pixel.
        """<html><body><h1>Deck</h1><img src="/cards/fool.jpg">
        <noscript><img height="1" width="1" src="https://t.example/tr?id=1"></noscript>
        <script>fbq('init')</script></body></html>""",
    ],
)
def test_does_not_need_js(html: str) -> None:
    assert extract_page(html, BASE).needs_js is False
