from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape

from albums.models import Image
from albums.tests.builders import make_album, make_image
from imagineer_project.testing import query_count
from labeling.analytics import _training_caption_words, render_album_coverage
from labeling.models import Label
from labeling.selectors import TRAINING_CAPTION_RULE, training_captions

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LONG = " ".join(f"w{n}" for n in range(25))
ZERO_KINDS = dict.fromkeys(Label.Kind.values, 0)
ZERO_SOURCES = dict.fromkeys(Label.Source.values, 0)


def label(image: Image, kind: str, text: str, minute: int, **fields: Any) -> Label:
    """A claude label created `minute` minutes after T0 (ordering matters)."""
    made = Label.objects.create(
        image=image, kind=kind, text=text, **{"source": "claude"} | fields
    )
    Label.objects.filter(pk=made.pk).update(created=T0 + timedelta(minutes=minute))
    return made


@pytest.fixture
def data(db: Any) -> dict[str, Any]:
    """Tarot deck (public): moon, sun (NSFW), blank (no labels). Drafts
    (private): draft. One image in no album: loose."""
    tarot = make_album(name="Tarot deck")
    drafts = make_album(name="Drafts", visibility="private")
    moon = make_image(album=tarot, seed=1)
    sun = make_image(album=tarot, seed=2, is_nsfw=True)
    blank = make_image(album=tarot, seed=3)
    draft = make_image(album=drafts, seed=4)
    loose = make_image(seed=5)
    label(
        moon,
        "caption",
        "a tarot card of the moon",
        1,
        source="human",
        review="approved",
    )
    label(moon, "caption", "the moon card glowing", 2)
    label(moon, "tag", "Moon", 3)
    label(moon, "tag", "night", 4)
    label(moon, "nsfw", "SAFE", 5)
    label(sun, "caption", "bad caption", 6, review="rejected")
    label(sun, "figcaption", "The Sun", 7, source="html")
    label(sun, "tag", " moon ", 8)
    label(sun, "tag", "sun", 9)
    label(sun, "nsfw", "suggestive", 10)
    label(draft, "tag", "Moon", 11, source="human")
    label(draft, "caption", LONG, 12)
    label(draft, "nsfw", "EXPLICIT", 13)
    label(loose, "tag", "Moon", 14, source="human")
    label(loose, "note", "keep", 15, source="human")
    return {
        "tarot": tarot,
        "drafts": drafts,
        "moon": moon,
        "sun": sun,
        "blank": blank,
        "draft": draft,
        "loose": loose,
    }


def get(client: Client, url: str) -> Any:
    response = client.get(url)
    assert response.status_code == 200, response.content
    return response.json()


# --- /api/labels/stats ------------------------------------------------------------


def test_stats_count_every_label(staff_client: Client, data: dict) -> None:
    assert get(staff_client, "/api/labels/stats") == {
        "total_labels": 15,
        "unique_texts": 12,  # "Moon" and " moon " are one text
        "images_labeled": 4,
        "total_images": 5,
        "labels_per_image": 3.75,
        "by_kind": ZERO_KINDS
        | {"caption": 4, "tag": 6, "nsfw": 3, "figcaption": 1, "note": 1},
        "by_source": ZERO_SOURCES | {"human": 4, "claude": 10, "html": 1},
    }


@pytest.mark.parametrize("ref", ["tarot-deck", "id"])
def test_stats_scoped_to_an_album_by_slug_or_id(
    staff_client: Client, data: dict, ref: str
) -> None:
    ref = str(data["tarot"].pk) if ref == "id" else ref

    assert get(staff_client, f"/api/labels/stats?album={ref}") == {
        "total_labels": 10,
        "unique_texts": 9,
        "images_labeled": 2,
        "total_images": 3,
        "labels_per_image": 5.0,
        "by_kind": ZERO_KINDS | {"caption": 3, "tag": 4, "nsfw": 2, "figcaption": 1},
        "by_source": ZERO_SOURCES | {"human": 1, "claude": 8, "html": 1},
    }


def test_stats_of_an_empty_library(staff_client: Client) -> None:
    assert get(staff_client, "/api/labels/stats") == {
        "total_labels": 0,
        "unique_texts": 0,
        "images_labeled": 0,
        "total_images": 0,
        "labels_per_image": 0.0,
        "by_kind": ZERO_KINDS,
        "by_source": ZERO_SOURCES,
    }


# --- /api/labels/top-tags ---------------------------------------------------------


def test_top_tags_count_images_case_insensitively(
    staff_client: Client, data: dict
) -> None:
    label(data["moon"], "tag", "MOON ", 16)  # a second spelling on the same image

    assert get(staff_client, "/api/labels/top-tags") == {
        "scope_images": 5,
        "items": [
            {"tag": "Moon", "count": 4, "percent": 80.0},
            {"tag": "night", "count": 1, "percent": 20.0},
            {"tag": "sun", "count": 1, "percent": 20.0},
        ],
    }


def test_top_tags_in_an_album_with_a_limit(staff_client: Client, data: dict) -> None:
    body = get(staff_client, "/api/labels/top-tags?album=tarot-deck&limit=2")

    assert body == {
        "scope_images": 3,
        "items": [
            {"tag": "Moon", "count": 2, "percent": 66.7},
            {"tag": "night", "count": 1, "percent": 33.3},
        ],
    }


def test_top_tags_by_source(staff_client: Client, data: dict) -> None:
    assert get(staff_client, "/api/labels/top-tags?source=human") == {
        "scope_images": 5,
        "items": [{"tag": "Moon", "count": 2, "percent": 40.0}],
    }


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "source=robot"])
def test_top_tags_rejects_bad_parameters(
    staff_client: Client, data: dict, query: str
) -> None:
    response = staff_client.get(f"/api/labels/top-tags?{query}")

    assert response.status_code == 422
    assert response.json()["error_code"] == "validation_error"


# --- /api/labels/distribution -----------------------------------------------------


def buckets(key: str, counts: dict[Any, int]) -> list[dict[str, Any]]:
    names: list[Any] = [*range(10), "10+"]
    return [{key: name, "images": counts.get(name, 0)} for name in names]


def words(counts: dict[str, int]) -> list[dict[str, Any]]:
    names = ["0", "1-10", "11-20", "21-40", "41-77", "78+"]
    return [{"words": name, "images": counts.get(name, 0)} for name in names]


def test_distribution_of_the_library(staff_client: Client, data: dict) -> None:
    tarot, drafts = data["tarot"], data["drafts"]

    assert get(staff_client, "/api/labels/distribution") == {
        "labels_per_image": buckets("labels", {0: 1, 2: 1, 3: 1, 5: 2}),
        "tags_per_image": buckets("tags", {0: 1, 1: 2, 2: 2}),
        # moon: the approved human caption (6 words), sun: its figcaption
        # (the rejected caption never counts), draft: 25 words.
        "caption_length_words": words({"0": 2, "1-10": 2, "21-40": 1}),
        "nsfw_ratings": {"SAFE": 1, "SUGGESTIVE": 1, "ADULT": 0, "EXPLICIT": 1},
        "by_album": [
            {
                "album_id": tarot.pk,
                "album_slug": "tarot-deck",
                "album_name": "Tarot deck",
                "images": 3,
                "labeled_images": 2,
                "labels": 10,
            },
            {
                "album_id": drafts.pk,
                "album_slug": "drafts",
                "album_name": "Drafts",
                "images": 1,
                "labeled_images": 1,
                "labels": 3,
            },
        ],
    }


def test_distribution_of_an_album(staff_client: Client, data: dict) -> None:
    label(data["sun"], "nsfw", "ADULT", 20)  # the newest rating counts

    body = get(staff_client, "/api/labels/distribution?album=tarot-deck")

    assert body["labels_per_image"] == buckets("labels", {0: 1, 5: 1, 6: 1})
    assert body["tags_per_image"] == buckets("tags", {0: 1, 2: 2})
    assert body["caption_length_words"] == words({"0": 1, "1-10": 2})
    assert body["nsfw_ratings"] == {
        "SAFE": 1,
        "SUGGESTIVE": 0,
        "ADULT": 1,
        "EXPLICIT": 0,
    }
    assert [row["album_slug"] for row in body["by_album"]] == ["tarot-deck"]


def test_distribution_top_buckets(staff_client: Client) -> None:
    image = make_image(seed=1)
    for n in range(12):
        label(image, "tag", f"tag {n}", n)
    # Newlines, tabs and runs of spaces separate words like one space does.
    text = "\n ".join(" \t ".join(f"w{n}" for n in range(k, k + 10)) for k in (0, 10))
    label(image, "caption", "  " + " ".join([text] * 4) + "\n", 20)  # 80 words

    body = get(staff_client, "/api/labels/distribution")

    assert body["labels_per_image"] == buckets("labels", {"10+": 1})
    assert body["tags_per_image"] == buckets("tags", {"10+": 1})
    assert body["caption_length_words"] == words({"78+": 1})


def test_sql_caption_rule_agrees_with_training_caption() -> None:
    """Every candidate has its own word count, so equal counts mean the same
    label was chosen."""
    cases: list[list[tuple[str, str, str]]] = [
        # (kind, source, review), oldest first
        [("caption", "human", "approved"), ("caption", "claude", "unreviewed")],
        [("caption", "claude", "approved"), ("caption", "claude", "unreviewed")],
        [("caption", "claude", "unreviewed"), ("caption", "claude", "unreviewed")],
        [("caption", "human", "unreviewed"), ("caption", "claude", "rejected")],
        [("caption", "sidecar", "unreviewed"), ("figcaption", "html", "unreviewed")],
        [("alt_text", "html", "unreviewed"), ("figcaption", "html", "unreviewed")],
        [("title", "html", "unreviewed"), ("caption", "html", "unreviewed")],
        [("caption", "human", "rejected"), ("alt_text", "html", "unreviewed")],
        [("caption", "legacy", "approved"), ("caption", "human", "approved")],
        [("tag", "claude", "unreviewed"), ("note", "human", "unreviewed")],
    ]
    words_of = {}
    for seed, case in enumerate(cases):
        image = make_image(seed=seed)
        for n, (kind, source, review) in enumerate(case):
            text = " ".join(["word"] * (n + 1 + 2 * seed))
            label(image, kind, text, n, source=source, review=review)
        words_of[image.pk] = seed
    # Equal timestamps: the lower id wins in both.
    tied = make_image(seed=99)
    label(tied, "caption", "one two three", 5)
    label(tied, "caption", "one two", 5)
    # Blank text is skipped in both.
    blank = make_image(seed=98)
    label(blank, "caption", "real caption here", 1)
    label(blank, "caption", " \n ", 2)

    in_sql = dict(
        Image.objects.annotate(words=_training_caption_words()).values_list(
            "pk", "words"
        )
    )
    in_python = {
        pk: len(choice.text.split()) for pk, choice in training_captions(in_sql).items()
    }
    assert in_sql == in_python
    assert in_sql[tied.pk] == 3
    assert in_sql[blank.pk] == 3


# --- /api/albums/{ref}/labeling/analytics -----------------------------------------


def test_album_analytics(staff_client: Client, data: dict) -> None:
    tarot = data["tarot"]

    assert get(staff_client, f"/api/albums/{tarot.pk}/labeling/analytics") == {
        "album_id": tarot.pk,
        "album_slug": "tarot-deck",
        "total_images": 3,
        "captioned": 2,  # moon (its own caption), sun (its figcaption)
        "unlabeled": 1,
        "coverage_percent": 66.7,
        "reviewed": 2,
        "approved": 1,
        "rejected": 1,
        "top_tags": [
            {"tag": "Moon", "count": 2, "percent": 66.7},
            {"tag": "night", "count": 1, "percent": 33.3},
            {"tag": "sun", "count": 1, "percent": 33.3},
        ],
        "last_labeled_at": "2026-01-01T00:10:00Z",
        "ready_for_training": False,
        "min_captioned_for_training": 20,
    }


def test_album_analytics_of_a_private_album_by_slug(
    staff_client: Client, data: dict, settings: Any
) -> None:
    settings.TRAINING_MIN_CAPTIONED = 1

    body = get(staff_client, "/api/albums/drafts/labeling/analytics")

    assert body == body | {
        "total_images": 1,
        "captioned": 1,
        "unlabeled": 0,
        "coverage_percent": 100.0,
        "reviewed": 0,
        "approved": 0,
        "rejected": 0,
        "top_tags": [{"tag": "Moon", "count": 1, "percent": 100.0}],
        "last_labeled_at": "2026-01-01T00:13:00Z",
        "ready_for_training": True,
        "min_captioned_for_training": 1,
    }


def test_album_analytics_of_an_empty_album(staff_client: Client) -> None:
    album = make_album(name="Empty")

    assert get(staff_client, "/api/albums/empty/labeling/analytics") == {
        "album_id": album.pk,
        "album_slug": "empty",
        "total_images": 0,
        "captioned": 0,
        "unlabeled": 0,
        "coverage_percent": 0.0,
        "reviewed": 0,
        "approved": 0,
        "rejected": 0,
        "top_tags": [],
        "last_labeled_at": None,
        "ready_for_training": False,
        "min_captioned_for_training": 20,
    }


# --- access and errors ------------------------------------------------------------

URLS = [
    "/api/labels/stats",
    "/api/labels/top-tags",
    "/api/labels/distribution",
    "/api/albums/tarot-deck/labeling/analytics",
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize(
    ("caller", "status", "code"),
    [("anonymous", 401, "unauthorized"), ("user", 403, "forbidden")],
)
def test_only_staff_may_read_analytics(
    call_as: Any, data: dict, url: str, caller: str, status: int, code: str
) -> None:
    response = call_as(caller).get(url)

    assert response.status_code == status
    assert response.json()["error_code"] == code
    assert "Moon" not in response.text


@pytest.mark.parametrize("url", URLS)
def test_staff_token_may_read_analytics(call_as: Any, data: dict, url: str) -> None:
    assert call_as("token").get(url).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/api/labels/stats?album=nope",
        "/api/labels/top-tags?album=nope",
        "/api/labels/distribution?album=999999",
        "/api/albums/nope/labeling/analytics",
    ],
)
def test_unknown_album_is_404(staff_client: Client, data: dict, url: str) -> None:
    response = staff_client.get(url)

    assert response.status_code == 404
    assert response.json()["error_code"] == "not_found"


# --- query counts -----------------------------------------------------------------


def grow(album: Any) -> None:
    """Ten more images in `album`, each with a caption, tags and a rating."""
    for seed in range(100, 110):
        image = make_image(album=album, seed=seed)
        label(image, "caption", f"caption number {seed}", seed)
        label(image, "tag", f"tag{seed % 3}", seed)
        label(image, "tag", "Moon", seed)
        label(image, "nsfw", "SAFE", seed)


@pytest.mark.parametrize(
    ("url", "most"),
    [
        ("/api/labels/stats?album=tarot-deck", 5),
        ("/api/labels/top-tags?album=tarot-deck", 6),
        ("/api/labels/distribution?album=tarot-deck", 8),
        ("/api/albums/tarot-deck/labeling/analytics", 7),
        # Training's set-slots part asks once whether the album holds a set.
        ("/albums/tarot-deck/", 10),
    ],
)
def test_queries_do_not_grow_with_the_library(
    staff_client: Client, data: dict, url: str, most: int
) -> None:
    few = query_count(staff_client, url)
    grow(data["tarot"])

    assert query_count(staff_client, url) == few <= most


# --- pages ------------------------------------------------------------------------


def test_album_page_shows_the_labeling_panel_to_staff(
    staff_client: Client, data: dict
) -> None:
    response = staff_client.get("/albums/tarot-deck/")

    assert response.status_code == 200
    html = response.text
    assert '<section class="coverage"' in html
    assert "2 / 3 captioned (66.7%)" in html
    assert 'style="width: 66.7%"' in html
    assert "<dt>Unlabeled</dt><dd>1</dd>" in html
    assert "<dt>Reviewed</dt><dd>2</dd>" in html
    assert "Not ready for training" in html
    assert '<span class="coverage-tag">Moon</span>' in html
    assert 'style="width: 33.3%"' in html


def test_album_page_says_ready_for_training(
    staff_client: Client, data: dict, settings: Any
) -> None:
    settings.TRAINING_MIN_CAPTIONED = 2

    html = staff_client.get("/albums/tarot-deck/").text

    assert '<span class="badge badge-ready">Ready for training</span>' in html


@pytest.mark.parametrize("caller", ["anonymous", "user"])
def test_album_page_hides_the_panel_from_non_staff(
    call_as: Any, data: dict, caller: str
) -> None:
    response = call_as(caller).get("/albums/tarot-deck/")

    assert response.status_code == 200
    assert "coverage" not in response.text
    assert "Moon" not in response.text  # the moon image's tags are not on this page


def test_render_album_coverage_for_the_admin(data: dict) -> None:
    html = render_album_coverage(data["tarot"])

    assert hasattr(html, "__html__")  # safe to insert unescaped
    assert "2 / 3 captioned" in html
    assert '<span class="coverage-tag">night</span>' in html


def trains_with(client: Client, image: Image) -> str:
    response = client.get(f"/images/{image.pk}/")
    assert response.status_code == 200
    html = response.text
    start = html.index('<section class="training-caption">')
    return html[start : html.index("</section>", start)]


def test_image_page_shows_the_approved_human_caption(
    client: Client, data: dict
) -> None:
    section = trains_with(client, data["moon"])  # anonymous: a public image

    assert "Trains with:" in section
    assert '<p class="caption-text">a tarot card of the moon</p>' in section
    assert "Chosen: approved caption by a person" in section
    assert "the moon card glowing" not in section
    assert escape(TRAINING_CAPTION_RULE) in section


def test_image_page_never_shows_a_rejected_caption(
    staff_client: Client, data: dict
) -> None:
    section = trains_with(staff_client, data["sun"])

    assert '<p class="caption-text">The Sun</p>' in section
    assert "Chosen: caption from the page (figure caption)" in section
    assert "bad caption" not in section


def test_image_page_falls_back_to_the_newest_claude_caption(
    client: Client, data: dict
) -> None:
    Label.objects.filter(image=data["moon"], source="human").update(review="rejected")

    section = trains_with(client, data["moon"])

    assert '<p class="caption-text">the moon card glowing</p>' in section
    assert "Chosen: newest caption from Claude" in section


def test_image_page_without_a_caption(client: Client, data: dict) -> None:
    section = trains_with(client, data["blank"])

    assert "No caption yet" in section
    assert "Chosen:" not in section
