"""The built-in set templates: a 54-card playing-card deck, a 78-card tarot and
the 12 signs of the zodiac. A data migration creates them; once a person edits
one, no later migration touches it again (SetTemplate.edited).

The prompts follow the predecessor's sets (data/sets/config.yaml), with the
full tables it only had outside the repository. Their style suffixes name no
art style (the predecessor's said "art nouveau", "vintage engraving"): the
theme a person gives decides it.
"""

from __future__ import annotations

from typing import Any

NEGATIVE = "blurry, low quality, cropped, watermark, text artifacts"

SUITS = [
    ("Spades", "♠", "black"),
    ("Hearts", "♥", "red"),
    ("Diamonds", "♦", "red"),
    ("Clubs", "♣", "black"),
]
RANKS = [
    ("Ace", "a single large ornate {symbol} in the centre"),
    ("Two", "two {symbol} pips"),
    ("Three", "three {symbol} pips"),
    ("Four", "four {symbol} pips in the corners"),
    ("Five", "five {symbol} pips"),
    ("Six", "six {symbol} pips in two columns"),
    ("Seven", "seven {symbol} pips"),
    ("Eight", "eight {symbol} pips in two columns"),
    ("Nine", "nine {symbol} pips"),
    ("Ten", "ten {symbol} pips in two columns"),
    ("Jack", "a young squire court figure, mirrored top and bottom"),
    ("Queen", "a crowned queen court figure holding a flower, mirrored top and bottom"),
    ("King", "a bearded king court figure with a sword, mirrored top and bottom"),
]


def playing_cards() -> dict[str, Any]:
    rows = []
    for suit, symbol, colour in SUITS:
        for value, layout in RANKS:
            rows.append(
                {
                    "values": {
                        "value": value,
                        "suit": suit,
                        "symbol": symbol,
                        "colour": colour,
                        "layout": layout.format(symbol=f"{colour} {suit.lower()}"),
                    }
                }
            )
    for colour in ("Red", "Black"):
        rows.append(
            {
                "key": f"{colour.lower()}-joker",
                "label": f"{colour} Joker",
                "values": {
                    "value": "Joker",
                    "suit": "",
                    "symbol": "★",
                    "colour": colour.lower(),
                    "layout": f"a grinning jester in {colour.lower()} motley",
                },
            }
        )
    return {
        "slug": "playing-cards",
        "name": "Playing cards",
        "description": "A full 54-card deck: 13 values in four suits and two jokers.",
        "columns": ["value", "suit", "symbol", "colour", "layout"],
        "rows": rows,
        "base_prompt": "Playing card illustration",
        "prompt_template": "{value} of {suit} playing card, {layout}, "
        "{colour} corner indices with {symbol}",
        "style_suffix": "ornate border, centred, full card visible, highly detailed",
        "example_theme": "Antique Deck",
        "width": 512,
        "height": 720,
        "negative_prompt": NEGATIVE,
    }


MAJOR_ARCANA = [
    ("The Fool", "0", "a young traveller stepping off a cliff edge with a small dog"),
    ("The Magician", "I", "a figure raising a wand, the four suit tools on a table"),
    ("The High Priestess", "II", "a seated priestess between two pillars, a scroll"),
    ("The Empress", "III", "a crowned woman in a wheat field, a heart-shaped shield"),
    ("The Emperor", "IV", "a stern ruler on a stone throne carved with rams"),
    ("The Hierophant", "V", "a religious teacher blessing two acolytes, crossed keys"),
    ("The Lovers", "VI", "two lovers beneath an angel, a tree of fruit and a serpent"),
    (
        "The Chariot",
        "VII",
        "a warrior in a chariot drawn by a black and a white sphinx",
    ),
    ("Strength", "VIII", "a calm woman gently closing a lion's jaws"),
    ("The Hermit", "IX", "an old hermit on a mountain holding a lantern with a star"),
    ("Wheel of Fortune", "X", "a great turning wheel with a sphinx and a serpent"),
    ("Justice", "XI", "a judge holding scales and an upright sword"),
    ("The Hanged Man", "XII", "a man hanging upside down from a living tree, serene"),
    ("Death", "XIII", "a skeleton knight on a white horse carrying a black banner"),
    (
        "Temperance",
        "XIV",
        "an angel pouring water between two cups, one foot in a pool",
    ),
    ("The Devil", "XV", "a horned devil above two chained figures"),
    ("The Tower", "XVI", "a tower struck by lightning, figures falling, flames"),
    ("The Star", "XVII", "a kneeling woman pouring water under a great star"),
    ("The Moon", "XVIII", "a moon over a path between two towers, a dog and a wolf"),
    ("The Sun", "XIX", "a child on a white horse beneath a radiant sun, sunflowers"),
    ("Judgement", "XX", "an angel blowing a trumpet, figures rising from coffins"),
    ("The World", "XXI", "a dancer in a laurel wreath, the four living creatures"),
]
TAROT_SUITS = [
    ("Wands", "fire", "flowering wooden staffs"),
    ("Cups", "water", "golden chalices"),
    ("Swords", "air", "steel swords"),
    ("Pentacles", "earth", "coins engraved with pentacles"),
]
TAROT_RANKS = [
    ("Ace", "I", "a hand from a cloud holding one of the {tools}"),
    ("Two", "II", "two {tools}"),
    ("Three", "III", "three {tools}"),
    ("Four", "IV", "four {tools}"),
    ("Five", "V", "five {tools}"),
    ("Six", "VI", "six {tools}"),
    ("Seven", "VII", "seven {tools}"),
    ("Eight", "VIII", "eight {tools}"),
    ("Nine", "IX", "nine {tools}"),
    ("Ten", "X", "ten {tools}"),
    ("Page", "", "a page studying one of the {tools}"),
    ("Knight", "", "a knight on horseback bearing one of the {tools}"),
    ("Queen", "", "an enthroned queen holding one of the {tools}"),
    ("King", "", "an enthroned king holding one of the {tools}"),
]


def tarot() -> dict[str, Any]:
    rows = [
        {
            "values": {
                "card": card,
                "arcana": "Major Arcana",
                "numeral": numeral,
                "element": "",
                "scene": scene,
            }
        }
        for card, numeral, scene in MAJOR_ARCANA
    ]
    for suit, element, tools in TAROT_SUITS:
        for rank, numeral, scene in TAROT_RANKS:
            rows.append(
                {
                    "values": {
                        "card": f"{rank} of {suit}",
                        "arcana": f"Minor Arcana, suit of {suit}",
                        "numeral": numeral,
                        "element": element,
                        "scene": scene.format(tools=tools),
                    }
                }
            )
    return {
        "slug": "tarot",
        "name": "Tarot",
        "description": "The 78 cards of a tarot: 22 major arcana and 56 minor.",
        "columns": ["card", "arcana", "numeral", "element", "scene"],
        "rows": rows,
        "base_prompt": "Tarot card illustration",
        "prompt_template": "{card} tarot card ({arcana}), {scene}",
        "style_suffix": "decorative frame with the card's title, full card visible, "
        "highly detailed",
        "example_theme": "Mystic Tarot",
        "width": 512,
        "height": 768,
        "negative_prompt": NEGATIVE,
    }


SIGNS = [
    ("Aries", "♈", "fire", "the ram", "March 21 – April 19"),
    ("Taurus", "♉", "earth", "the bull", "April 20 – May 20"),
    ("Gemini", "♊", "air", "the twins", "May 21 – June 20"),
    ("Cancer", "♋", "water", "the crab", "June 21 – July 22"),
    ("Leo", "♌", "fire", "the lion", "July 23 – August 22"),
    ("Virgo", "♍", "earth", "the maiden", "August 23 – September 22"),
    ("Libra", "♎", "air", "the scales", "September 23 – October 22"),
    ("Scorpio", "♏", "water", "the scorpion", "October 23 – November 21"),
    ("Sagittarius", "♐", "fire", "the archer", "November 22 – December 21"),
    ("Capricorn", "♑", "earth", "the sea-goat", "December 22 – January 19"),
    ("Aquarius", "♒", "air", "the water bearer", "January 20 – February 18"),
    ("Pisces", "♓", "water", "the two fishes", "February 19 – March 20"),
]


def zodiac() -> dict[str, Any]:
    rows = [
        {
            "values": {
                "sign": sign,
                "glyph": glyph,
                "element": element,
                "emblem": emblem,
                "dates": dates,
            }
        }
        for sign, glyph, element, emblem, dates in SIGNS
    ]
    return {
        "slug": "zodiac",
        "name": "Zodiac",
        "description": "The twelve signs of the zodiac.",
        "columns": ["sign", "glyph", "element", "emblem", "dates"],
        "rows": rows,
        "base_prompt": "Illustration of the zodiac sign",
        "prompt_template": (
            "{sign} zodiac symbol, {emblem}, {element} sign, glyph {glyph}"
        ),
        "style_suffix": "celestial art, stars and constellations",
        "example_theme": "Night Sky",
        "width": 512,
        "height": 768,
        "negative_prompt": NEGATIVE,
    }


def builtin_templates() -> list[dict[str, Any]]:
    """Each built-in template's fields; rows in stored form once normalized."""
    return [playing_cards(), tarot(), zodiac()]
