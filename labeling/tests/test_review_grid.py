"""The review grid's page and its key presses, through the admin client: the
changelist's filters, constant queries per page, and each action's effect on
the one review state, NSFW and the training caption."""

from __future__ import annotations

import json
from typing import Any

import pytest

from albums.models import Image
from albums.tests.builders import make_album, make_image
from imagineer_project.testing import make_user, query_count
from labeling.models import Label
from labeling.selectors import training_caption
from labeling.services import label_create

pytestmark = pytest.mark.django_db

GRID = "/admin/albums/image/review/"
ACT = "/admin/albums/image/review/act/"


def post(client: Any, **body: Any) -> Any:
    return client.post(ACT, json.dumps(body), content_type="application/json")


def cards(response: Any) -> list[int]:
    return [card.id for card in response.context["cards"]]


def captioned(album: Any, seed: int, caption: str = "", **fields: Any) -> Image:
    image = make_image(album=album, seed=seed, **fields)
    label_create(
        image=image, kind="caption", text=caption or f"card {seed}", source="claude"
    )
    label_create(image=image, kind="tag", text=f"tag {seed}", source="claude")
    return image


def test_grid_shows_an_albums_images_with_caption_tags_and_state(admin_client):
    album = make_album(name="Tarot")
    tall = captioned(album, 1, "the tower", size=(30, 60), is_nsfw=True)
    wide = captioned(album, 2, "the star", size=(60, 30), review_status="approved")
    make_image(seed=3)  # in no album

    response = admin_client.get(GRID, {"album": album.pk})

    assert response.status_code == 200
    assert cards(response) == [wide.pk, tall.pk]  # newest first, as the changelist
    text = response.text
    assert "the tower" in text and "the star" in text and "tag 1" in text
    # The image's own aspect ratio, in a 240 px box.
    assert f'src="/api/images/{tall.pk}/thumbnail?size=512" width="120"' in text
    assert 'width="240"\n             height="120"' in text
    assert f'data-id="{wide.pk}" data-review="approved"' in text
    assert 'data-nsfw="true"' in text
    assert "? Keys" in text and "Approve: the image and the caption" in text


def test_grid_takes_the_changelists_filters_and_search(admin_client):
    album = make_album(name="Tarot")
    nsfw = captioned(album, 1, "a moth", is_nsfw=True)
    captioned(album, 2, "a moth")
    captioned(album, 3, "a lynx", is_nsfw=True)

    response = admin_client.get(
        GRID, {"album": album.pk, "is_nsfw__exact": "1", "q": "moth"}
    )
    assert cards(response) == [nsfw.pk]
    heading = "album: <strong>Tarot</strong>, NSFW: <strong>Yes</strong>, "
    assert heading + "search: <strong>moth</strong>" in response.text
    changelist = admin_client.get(
        "/admin/albums/image/", {"album": album.pk, "is_nsfw__exact": "1", "p": 1}
    )
    link = f"{GRID}?album={album.pk}&amp;is_nsfw__exact=1"
    assert "Open in review grid" in changelist.text and link in changelist.text


def test_grid_pages_by_sixty(admin_client):
    album = make_album()
    images = [make_image(album=album, seed=s) for s in range(62)]
    first = admin_client.get(GRID, {"album": album.pk})
    second = admin_client.get(GRID, {"album": album.pk, "p": 2})
    assert len(cards(first)) == 60
    assert cards(second) == [images[1].pk, images[0].pk]
    assert f'data-next-url="?album={album.pk}&amp;p=2"' in first.text
    assert f'data-prev-url="?album={album.pk}&amp;p=1"' in second.text


def test_grid_queries_do_not_grow_with_the_page(admin_client):
    album = make_album()
    for seed in range(10):
        captioned(album, seed)
    few = query_count(admin_client, f"{GRID}?album={album.pk}")
    for seed in range(10, 60):
        captioned(album, seed)

    assert query_count(admin_client, f"{GRID}?album={album.pk}") == few
    assert len(cards(admin_client.get(GRID, {"album": album.pk}))) == 60


def test_grid_is_for_staff_only(client):
    make_user(username="visitor")
    client.login(username="visitor", password="pw-for-tests-only")
    assert client.get(GRID).status_code == 302  # to the admin's login
    image = make_image(seed=1)
    assert post(client, action="approve", ids=[image.pk]).status_code == 302
    assert Image.objects.get(pk=image.pk).review_status == "unreviewed"


def test_approve_approves_the_image_and_the_caption_it_trains_with(admin_client):
    image = captioned(None, 1, "a tower")
    response = post(admin_client, action="approve", ids=[image.pk])

    assert response.status_code == 200
    assert response.json() == {
        "cards": [
            {
                "id": image.pk,
                "is_nsfw": False,
                "review": "approved",
                "caption": "a tower",
                "caption_reason": "newest caption from Claude",
                "tags": ["tag 1"],
            }
        ]
    }
    image.refresh_from_db()
    caption = Label.objects.get(image=image, kind="caption")
    assert (image.review_status, caption.review) == ("approved", "approved")


def test_reject_leaves_the_image_out_and_the_caption_as_it_was(admin_client):
    image = captioned(None, 1, "a tower")
    body = post(admin_client, action="reject", ids=[image.pk]).json()
    assert body["cards"][0]["review"] == "rejected"
    image.refresh_from_db()
    assert image.review_status == "rejected"
    assert Label.objects.get(image=image, kind="caption").review == "unreviewed"


def test_nsfw_and_safe_are_a_persons_decision(admin_client):
    image = make_image(seed=1)
    assert post(admin_client, action="nsfw", ids=[image.pk]).json()["cards"][0][
        "is_nsfw"
    ]
    image.refresh_from_db()
    assert (image.is_nsfw, image.nsfw_source) == (True, "human")
    post(admin_client, action="safe", ids=[image.pk])
    image.refresh_from_db()
    assert image.is_nsfw is False


def test_caption_edit_writes_the_persons_training_caption(admin_client):
    image = captioned(None, 1, "a tower")
    body = post(
        admin_client, action="caption", ids=[image.pk], caption="  a burning tower "
    ).json()

    assert body["cards"][0]["caption"] == "a burning tower"
    assert body["cards"][0]["caption_reason"] == "approved caption by a person"
    choice = training_caption(image)
    label = Label.objects.get(pk=choice.label_id)
    assert (label.text, label.source, label.review, label.author.username) == (
        "a burning tower",
        "human",
        "approved",
        "admin",
    )


def test_bulk_actions_change_every_selected_image(admin_client):
    images = [captioned(None, s) for s in range(3)]
    ids = [im.pk for im in images[:2]]
    body = post(admin_client, action="approve", ids=ids).json()
    assert [c["review"] for c in body["cards"]] == ["approved", "approved"]
    post(admin_client, action="nsfw", ids=ids)
    assert sorted(
        Image.objects.values_list("pk", "review_status", "is_nsfw")
    ) == sorted(
        [
            (images[0].pk, "approved", True),
            (images[1].pk, "approved", True),
            (images[2].pk, "unreviewed", False),
        ]
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"action": "explode", "ids": [1]}, "Unknown action 'explode'."),
        ({"action": "approve", "ids": []}, "Choose between 1 and 1000 images."),
        ({"action": "approve", "ids": ["x"]}, "Send JSON: {action, ids}."),
        ({"action": "caption", "ids": [1], "caption": " "}, "A caption edit needs"),
    ],
)
def test_bad_requests_say_what_is_wrong_and_change_nothing(admin_client, body, error):
    image = captioned(None, 1, "a tower")
    body["ids"] = [image.pk if i == 1 else i for i in body["ids"]]
    response = post(admin_client, **body)
    assert response.status_code == 422
    assert response.json()["error"].startswith(error)
    assert Image.objects.get(pk=image.pk).review_status == "unreviewed"
    assert training_caption(image).text == "a tower"
