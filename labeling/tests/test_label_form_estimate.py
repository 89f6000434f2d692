"""The "Label with Claude" form: refused at once without an API key, the cost
estimate before anything starts, the per-album label page, and the job page's
list of what it wrote."""

from __future__ import annotations

from typing import Any

import pytest

from albums.models import Album, Image
from albums.tests.builders import make_album, make_image
from imagineer_project.testing import query_count
from labeling import claude
from labeling.estimates import labeling_estimate
from labeling.models import Label, LabelingItem, LabelingJob

pytestmark = pytest.mark.django_db

IMAGES = "/admin/albums/image/"
ALBUMS = "/admin/albums/album/"


def label_page(album: Any) -> str:
    return f"{ALBUMS}{album.pk}/label/"


def album_of(count: int, name: str = "Tarot", first_seed: int = 0) -> Any:
    album = make_album(name=name)
    for seed in range(first_seed, first_seed + count):
        make_image(album=album, seed=seed)
    return album


def measured(*tokens: tuple[int, int], model: str = "") -> None:
    """Past labeling requests that used these (input, output) tokens."""
    from django.conf import settings

    job = LabelingJob.objects.create(
        model_name=model or settings.LABELING_MODEL, prompt_version="old"
    )
    for seed, (inp, out) in enumerate(tokens, start=100):
        LabelingItem.objects.create(
            job=job,
            image=make_image(seed=seed),
            outcome="labeled",
            input_tokens=inp,
            output_tokens=out,
        )


def claude_caption(image: Image) -> None:
    Label.objects.create(
        image=image,
        kind="caption",
        text="labeled before",
        source="claude",
        prompt_version=claude.prompt_version("training"),
    )


# --- no API key -------------------------------------------------------------------


def test_the_label_page_without_a_key_says_what_to_set_and_has_no_form(
    admin_client: Any, settings: Any
) -> None:
    settings.ANTHROPIC_API_KEY = ""
    album = album_of(1)
    page = admin_client.get(label_page(album))
    assert page.status_code == 200
    assert "set ANTHROPIC_API_KEY" in page.text and "docs/labeling.md" in page.text
    assert 'name="style"' not in page.text and "≈ $" not in page.text

    admin_client.post(label_page(album), {"style": "training"})
    assert not LabelingJob.objects.exists()


def test_the_image_action_without_a_key_refuses_before_the_form(
    admin_client: Any, settings: Any
) -> None:
    settings.ANTHROPIC_API_KEY = ""
    image = make_image(seed=1)
    response = admin_client.post(
        IMAGES, {"action": "label_with_claude", "_selected_action": [image.pk]}
    )
    assert response.status_code == 302  # back to the list: no form at all
    page = admin_client.get(response["Location"])
    assert "set ANTHROPIC_API_KEY" in page.text and "docs/labeling.md" in page.text
    assert not LabelingJob.objects.exists()


# --- the estimate -----------------------------------------------------------------


def test_with_nothing_measured_the_estimate_is_the_documented_prior(
    settings: Any,
) -> None:
    settings.LABELING_PRICE_INPUT_PER_MTOK = 3.0
    settings.LABELING_PRICE_OUTPUT_PER_MTOK = 15.0
    settings.LABELING_MAX_PIXELS = 750_000  # 1,000 image tokens + 600 of prompt
    album = album_of(3)
    estimate = labeling_estimate(images=Image.objects.filter(memberships__album=album))
    # Per image: 1,600 in at $3/M + 250 out at $15/M = $0.00855.
    assert str(estimate.cost_usd) == "0.025650"
    assert str(estimate) == "≈ $0.03 for 3 images (estimate, no measurement yet)"


def test_the_label_page_shows_the_measured_estimate_for_each_choice(
    admin_client: Any, fake_anthropic: Any, settings: Any
) -> None:
    settings.LABELING_PRICE_INPUT_PER_MTOK = 3.0
    settings.LABELING_PRICE_OUTPUT_PER_MTOK = 15.0
    measured((100_000, 10_000), (300_000, 30_000))  # $0.60 + $0.30 per image
    measured((9_000_000, 9_000_000), model="another-model")  # not this model's
    album = album_of(4)
    claude_caption(album.images.first())

    page = admin_client.get(label_page(album))
    assert page.status_code == 200 and 'name="style"' in page.text
    assert (
        "≈ $2.70 for 3 images (from 2 measured labels); "
        "1 already labeled are skipped" in page.text
    )
    assert "≈ $3.60 for 4 images (from 2 measured labels)<" in page.text  # re-label
    assert "Message Batches API\n50% of that" in page.text


def test_the_image_action_shows_the_estimate_before_starting(
    admin_client: Any, fake_anthropic: Any
) -> None:
    images = [make_image(seed=s) for s in (1, 2)]
    page = admin_client.post(
        IMAGES,
        {"action": "label_with_claude", "_selected_action": [i.pk for i in images]},
    )
    assert page.status_code == 200
    assert "for 2 images (estimate, no measurement yet)" in page.text
    assert not LabelingJob.objects.exists()


def test_the_album_action_estimates_every_selected_album(
    admin_client: Any, fake_anthropic: Any
) -> None:
    albums = [album_of(2, "Tarot"), album_of(3, "Zodiac", first_seed=10)]
    page = admin_client.post(
        ALBUMS,
        {"action": "label_with_claude", "_selected_action": [a.pk for a in albums]},
    )
    assert "for 5 images (estimate" in page.text
    album_of(1, "Both", first_seed=10)  # an image in two albums counts once
    albums.append(Album.objects.get(name="Both"))
    page = admin_client.post(
        ALBUMS,
        {"action": "label_with_claude", "_selected_action": [a.pk for a in albums]},
    )
    assert "for 5 images (estimate" in page.text
    assert "Each album gets its own job" in page.text


# --- starting, and the job page ---------------------------------------------------


def test_labeling_an_album_from_its_page_lists_what_it_wrote(
    admin_client: Any, fake_anthropic: Any, django_capture_on_commit_callbacks: Any
) -> None:
    album = album_of(2)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(label_page(album), {"style": "training"})
    job = LabelingJob.objects.get()
    assert response.status_code == 302 and response["Location"] == (
        f"/admin/labeling/labelingjob/{job.pk}/change/"
    )
    job.refresh_from_db()
    assert (job.album, job.status, job.labeled_count) == (album, "succeeded", 2)

    page = admin_client.get(response["Location"]).text
    assert "What it wrote" in page
    assert page.count("a small test image, flat colour") == 2
    assert page.count("<td>test image, flat colour</td>") == 2  # the tags
    for image in album.images.all():
        assert f'src="/api/images/{image.pk}/thumbnail?size=256"' in page

    # No query per image: two more labeled images cost no more queries.
    url = response["Location"]
    before = query_count(admin_client, url)
    with django_capture_on_commit_callbacks(execute=True):
        make_image(album=album, seed=7), make_image(album=album, seed=8)
        admin_client.post(label_page(album), {"style": "training"})
    assert LabelingJob.objects.get(pk=job.pk).labeled_count == 2
    newer = LabelingJob.objects.exclude(pk=job.pk).get()
    LabelingItem.objects.filter(job=newer).update(job=job)  # four on the first page
    assert query_count(admin_client, url) == before
    assert admin_client.get(url).text.count('class="labeling-caption"') == 4
