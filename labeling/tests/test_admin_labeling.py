"""Labeling in the admin: the Claude actions, caption-first editing, find/replace,
review, the job pages and the album's coverage."""

from __future__ import annotations

from typing import Any

import pytest

from albums.tests.builders import make_album, make_image
from imagineer_project.testing import admin_listed
from labeling.models import Label, LabelingJob
from labeling.services import label_create

pytestmark = pytest.mark.django_db

IMAGES = "/admin/albums/image/"
ALBUMS = "/admin/albums/album/"
LABELS = "/admin/labeling/label/"
JOBS = "/admin/labeling/labelingjob/"


def act(client: Any, url: str, action: str, objects: list, **form: Any) -> Any:
    data = {"action": action, "_selected_action": [o.pk for o in objects]}
    if form:
        data |= {"select_across": "0", "apply": "yes", **form}
    return client.post(url, data)


def test_label_with_claude_on_images_asks_then_starts_one_job(
    admin_client, fake_anthropic, django_capture_on_commit_callbacks
):
    images = [make_image(seed=s) for s in (1, 2)]
    page = act(admin_client, IMAGES, "label_with_claude", images)
    assert page.status_code == 200
    assert "2 images selected" in page.text and 'name="budget"' in page.text

    with django_capture_on_commit_callbacks(execute=True):
        done = act(
            admin_client,
            IMAGES,
            "label_with_claude",
            images,
            style="training",
            budget="1.5",
        )
    job = LabelingJob.objects.get()
    assert done.status_code == 302 and done["Location"] == f"{JOBS}{job.pk}/change/"
    job.refresh_from_db()
    assert (job.status, job.labeled_count, str(job.budget_usd)) == (
        "succeeded",
        2,
        "1.5000",
    )
    page = admin_client.get(f"{JOBS}{job.pk}/change/")
    assert "2 selected images" in page.text and "$0.0" in page.text


def test_label_with_claude_on_albums_starts_a_job_per_album(
    admin_client, fake_anthropic, django_capture_on_commit_callbacks
):
    albums = [make_album(name=n) for n in ("Tarot", "Zodiac")]
    for i, album in enumerate(albums):
        make_image(album=album, seed=i)
    with django_capture_on_commit_callbacks(execute=True):
        act(admin_client, ALBUMS, "label_with_claude", albums, style="description")
    jobs = LabelingJob.objects.order_by("id")
    assert [(j.album, j.style, j.status) for j in jobs] == [
        (albums[0], "description", "succeeded"),
        (albums[1], "description", "succeeded"),
    ]


def test_label_with_claude_without_a_key_says_how_to_fix_it(admin_client):
    image = make_image(seed=1)
    response = act(admin_client, IMAGES, "label_with_claude", [image], style="training")
    assert response.status_code == 302
    page = admin_client.get(response["Location"])
    assert "set ANTHROPIC_API_KEY" in page.text
    assert not LabelingJob.objects.exists()


def test_find_and_replace_in_captions_makes_them_the_persons(admin_client):
    first, second = make_image(seed=1), make_image(seed=2)
    claude = label_create(
        image=first, kind="caption", text="A Cat on a mat", source="claude"
    )
    mine = label_create(image=second, kind="caption", text="a cat, sleeping")
    tag = label_create(image=second, kind="tag", text="cat")
    act(
        admin_client,
        IMAGES,
        "find_replace_captions",
        [first, second],
        find="cat",
        replace="lynx",
    )
    for label in (claude, mine, tag):
        label.refresh_from_db()
    assert (claude.text, claude.source, claude.author.username) == (
        "A lynx on a mat",
        "human",
        "admin",
    )
    assert mine.text == "a lynx, sleeping"
    assert tag.text == "cat"  # only captions


def test_the_image_page_edits_the_training_caption_first_and_tags_as_a_list(
    admin_client,
):
    image = make_image(seed=1)
    label_create(image=image, kind="caption", text="a moth", source="claude")
    label_create(image=image, kind="tag", text="insect", source="claude")
    label_create(image=image, kind="tag", text="night", source="claude")
    url = f"{IMAGES}{image.pk}/change/"
    page = admin_client.get(url)
    assert "newest caption from Claude" in page.text
    form = page.context["adminform"].form
    assert form.initial["caption"] == "a moth"
    assert form.initial["tags"] == "insect\nnight"

    response = admin_client.post(
        url,
        {
            "visibility": "public",
            "review_status": "unreviewed",
            "caption": "a luna moth on bark",
            "tags": "insect\nluna moth\n",
            "labels-TOTAL_FORMS": "0",
            "labels-INITIAL_FORMS": "0",
            "labels-MIN_NUM_FORMS": "0",
            "labels-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302
    assert sorted(image.labels.values_list("kind", "text", "source", "review")) == [
        ("caption", "a luna moth on bark", "human", "approved"),
        ("caption", "a moth", "claude", "unreviewed"),
        ("tag", "insect", "claude", "unreviewed"),
        ("tag", "luna moth", "human", "unreviewed"),
    ]
    assert "approved caption by a person" in admin_client.get(url).text


def test_rejecting_a_caption_in_the_image_pages_label_rows(admin_client):
    image = make_image(seed=1)
    caption = label_create(image=image, kind="caption", text="wrong", source="claude")
    admin_client.post(
        f"{IMAGES}{image.pk}/change/",
        {
            "visibility": "public",
            "review_status": "unreviewed",
            "caption": "wrong",
            "tags": "",
            "labels-TOTAL_FORMS": "1",
            "labels-INITIAL_FORMS": "1",
            "labels-MIN_NUM_FORMS": "0",
            "labels-MAX_NUM_FORMS": "1000",
            "labels-0-id": caption.pk,
            "labels-0-image": image.pk,
            "labels-0-kind": "caption",
            "labels-0-text": "wrong",
            "labels-0-source": "claude",
            "labels-0-review": "rejected",
        },
    )
    caption.refresh_from_db()
    assert (caption.review, caption.text, caption.source) == (
        "rejected",
        "wrong",
        "claude",
    )


def test_label_changelist_filters_by_review_model_and_album(admin_client):
    album = make_album(name="Moths")
    inside, outside = make_image(album=album, seed=1), make_image(seed=2)
    wanted = Label.objects.create(
        image=inside, kind="caption", text="a", source="claude", model_name="m1"
    )
    Label.objects.create(image=outside, kind="caption", text="b", model_name="m1")
    Label.objects.create(image=inside, kind="caption", text="c", model_name="m2")
    response = admin_client.get(LABELS, {"album": album.pk, "model_name": "m1"})
    assert admin_listed(response) == [wanted.pk]

    act(admin_client, LABELS, "approve", [wanted])
    response = admin_client.get(LABELS, {"review__exact": "approved"})
    assert admin_listed(response) == [wanted.pk]


def test_job_pages_show_progress_failures_and_cancel(admin_client, fake_anthropic):
    image = make_image(seed=1)
    job = LabelingJob.objects.create(
        model_name="m", status="running", progress_done=1, progress_total=4
    )
    job.items.create(image=image, outcome="failed", reason="Empty reply")
    listing = admin_client.get(JOBS)
    assert "1/4" in listing.text
    page = admin_client.get(f"{JOBS}{job.pk}/change/")
    assert "Empty reply" in page.text and "Cancel job" in page.text
    assert 'http-equiv="refresh"' in page.text
    admin_client.post(f"{JOBS}{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.cancel_requested


def test_album_change_page_shows_labeling_coverage(admin_client, fake_anthropic):
    album = make_album(name="Moths")
    image = make_image(album=album, seed=1)
    make_image(album=album, seed=2)
    label_create(image=image, kind="caption", text="a moth", source="claude")
    label_create(image=image, kind="tag", text="insect", source="claude")
    page = admin_client.get(f"{ALBUMS}{album.pk}/change/")
    assert "Coverage and top tags" in page.text
    assert "1 / 2 captioned (50.0%)" in page.text
    assert "insect" in page.text
