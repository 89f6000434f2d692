"""Labeling jobs end to end: real SDK, local fake API, real database and files."""

from __future__ import annotations

from decimal import Decimal

import pytest

from albums.models import Image, NsfwSource
from albums.services import image_update
from albums.tests.builders import make_album, make_image
from imagineer_project.runs import run_execute, run_request_cancel
from imagineer_project.testing.fake_anthropic import error, refusal, tool_reply
from labeling.claude import LabelingNotConfigured
from labeling.models import Label, LabelingItem, LabelingJob
from labeling.runs import labeling_job_execute
from labeling.services import label_create, label_update, labeling_job_create
from labeling.tasks import run_labeling_job

pytestmark = pytest.mark.django_db


def album_of(n: int, **album_fields):
    album = make_album(**album_fields)
    images = [make_image(album=album, seed=i) for i in range(n)]
    return album, images


def run(job: LabelingJob, **kwargs) -> LabelingJob:
    """Run a job in the foreground the way the worker does."""
    run_execute(LabelingJob, job.pk, lambda j: labeling_job_execute(j, **kwargs))
    job.refresh_from_db()
    return job


def labels_of(image, **filters):
    return sorted(
        image.labels.filter(**filters).values_list("kind", "text", "source"),
    )


def test_an_album_job_labels_every_image_and_accounts_for_cost(fake_anthropic):
    album, images = album_of(3)
    fake_anthropic.default = tool_reply(
        "a tarot card", tags=["tarot card", "gold border"], usage=(1000, 100)
    )
    job = run(labeling_job_create(album=album, budget_usd=None, enqueue=False))
    assert job.status == "succeeded"
    assert (job.labeled_count, job.skipped_count, job.failed_count) == (3, 0, 0)
    assert (job.input_tokens, job.output_tokens) == (3000, 300)
    assert job.cost_usd == Decimal("0.013500")  # 3 × (1000 × $3 + 100 × $15) / 1M
    assert (job.progress_done, job.progress_total) == (3, 3)
    assert job.message == (
        "3 labeled, 0 skipped, 0 failed; 3,000 tokens in, 300 out, about $0.0135"
    )
    assert labels_of(images[0]) == [
        ("caption", "a tarot card", "claude"),
        ("nsfw", "SAFE", "claude"),
        ("tag", "gold border", "claude"),
        ("tag", "tarot card", "claude"),
    ]
    caption = images[0].labels.get(kind="caption")
    assert (caption.model_name, caption.prompt_version, caption.confidence) == (
        "claude-sonnet-5-5",
        "training-v1",
        0.9,
    )


def test_the_task_runs_once_even_when_delivered_twice(fake_anthropic):
    album, images = album_of(2)
    job = labeling_job_create(album=album, enqueue=False)
    assert run_labeling_job(job.pk) == "succeeded"
    assert run_labeling_job(job.pk) is None  # not claimable any more
    assert Label.objects.filter(kind="caption").count() == 2
    assert len(fake_anthropic.requests) == 2


def test_rerunning_skips_what_this_prompt_version_labeled(fake_anthropic):
    album, images = album_of(3)
    run(labeling_job_create(album=album, enqueue=False))
    again = run(labeling_job_create(album=album, enqueue=False))
    assert (again.labeled_count, again.skipped_count) == (0, 3)
    assert (again.progress_done, again.progress_total) == (3, 3)
    assert Label.objects.filter(kind="caption").count() == 3
    assert len(fake_anthropic.requests) == 3


def test_a_forced_relabel_replaces_claudes_labels_and_keeps_a_persons(
    fake_anthropic, staff_user
):
    album, (image,) = album_of(1)
    fake_anthropic.default = tool_reply("first caption", tags=["old tag", "fox"])
    run(labeling_job_create(album=album, enqueue=False))
    # A person fixes the caption and adds a tag of their own.
    label_update(
        label=image.labels.get(kind="caption"), user=staff_user, text="a red fox"
    )
    label_create(image=image, kind="tag", text="Fox", author=staff_user)

    fake_anthropic.default = tool_reply("second caption", tags=["new tag", "fox"])
    job = run(labeling_job_create(album=album, force=True, enqueue=False))
    assert job.labeled_count == 1
    assert labels_of(image) == [
        ("caption", "a red fox", "human"),
        ("caption", "second caption", "claude"),
        ("nsfw", "SAFE", "claude"),
        ("tag", "Fox", "human"),
        ("tag", "new tag", "claude"),  # Claude's "fox" is the person's already
    ]
    edited = image.labels.get(kind="caption", source="human")
    assert (edited.author, edited.review) == (staff_user, "approved")


@pytest.mark.parametrize(
    ("rating", "is_nsfw"),
    [("SAFE", False), ("SUGGESTIVE", False), ("ADULT", True), ("EXPLICIT", True)],
)
def test_the_rating_sets_the_nsfw_flag(fake_anthropic, rating, is_nsfw):
    album, (image,) = album_of(1)
    fake_anthropic.default = tool_reply(nsfw_rating=rating)
    run(labeling_job_create(album=album, enqueue=False))
    image.refresh_from_db()
    assert (image.is_nsfw, image.nsfw_source) == (is_nsfw, NsfwSource.MODEL)
    assert image.labels.get(kind="nsfw").text == rating


def test_a_persons_nsfw_decision_is_never_overwritten(fake_anthropic):
    album, (safe, flagged) = album_of(2)
    image_update(image=safe, is_nsfw=False)
    image_update(image=flagged, is_nsfw=True)
    fake_anthropic.queue(tool_reply(nsfw_rating="EXPLICIT"), tool_reply())
    run(labeling_job_create(album=album, enqueue=False))
    safe.refresh_from_db()
    flagged.refresh_from_db()
    assert (safe.is_nsfw, safe.nsfw_source) == (False, NsfwSource.HUMAN)
    assert (flagged.is_nsfw, flagged.nsfw_source) == (True, NsfwSource.HUMAN)


def test_a_refused_or_malformed_image_fails_alone_and_the_job_goes_on(fake_anthropic):
    album, images = album_of(3)
    fake_anthropic.queue(tool_reply("one"), refusal(), tool_reply(nsfw_rating="?"))
    from django.test import override_settings

    with override_settings(LABELING_CONCURRENCY=1):
        job = run(labeling_job_create(album=album, enqueue=False))
    assert job.status == "succeeded"
    assert (job.labeled_count, job.failed_count) == (1, 2)
    failures = list(
        job.items.filter(outcome="failed").values_list("image_id", "reason")
    )
    assert failures == [
        (images[1].pk, "Claude declined to label this image (refusal)."),
        (
            images[2].pk,
            "Invalid reply: nsfw_rating must be one of SAFE, SUGGESTIVE, ADULT, "
            "EXPLICIT, not '?'",
        ),
    ]
    assert not images[1].labels.exists()


def test_a_budget_stops_the_job_cleanly(fake_anthropic, settings):
    settings.LABELING_CONCURRENCY = 1
    album, images = album_of(6)
    fake_anthropic.default = tool_reply(usage=(1000, 100))  # $0.0045 each
    job = run(labeling_job_create(album=album, budget_usd="0.01", enqueue=False))
    assert job.status == "succeeded"
    assert job.budget_exhausted
    assert job.labeled_count == 2  # 2 × 0.0045 ≤ 0.01 < 3 × 0.0045
    assert job.message.startswith("Stopped at the $0.0100 budget: 2 labeled")
    assert Label.objects.filter(kind="caption").count() == 2


def test_a_budget_holds_with_requests_in_parallel(fake_anthropic, settings):
    settings.LABELING_CONCURRENCY = 4
    album, images = album_of(12)
    fake_anthropic.default = tool_reply(usage=(1000, 100))  # $0.0045 each
    job = run(labeling_job_create(album=album, budget_usd="0.02", enqueue=False))
    assert job.budget_exhausted
    # The first request prices an image; after that, spent plus in flight
    # never passes the budget: 4 × 0.0045 = 0.018 ≤ 0.02 < 5 × 0.0045.
    assert job.labeled_count == 4
    assert job.cost_usd == Decimal("0.018")


def test_no_api_key_refuses_before_a_job_exists(settings):
    settings.ANTHROPIC_API_KEY = ""
    album, _ = album_of(1)
    with pytest.raises(LabelingNotConfigured):
        labeling_job_create(album=album)
    assert not LabelingJob.objects.exists()


def test_a_rejected_key_fails_the_job_with_a_clear_error(fake_anthropic, settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-revoked"
    album, _ = album_of(2)
    job = run(labeling_job_create(album=album, enqueue=False))
    assert job.status == "failed"
    assert "refused the key (401): check ANTHROPIC_API_KEY" in job.error


def test_an_unreachable_api_stops_the_job_after_a_few_failures(
    fake_anthropic, settings
):
    settings.ANTHROPIC_MAX_RETRIES = 0
    settings.LABELING_MAX_CONSECUTIVE_API_ERRORS = 2
    settings.LABELING_CONCURRENCY = 1
    album, _ = album_of(5)
    fake_anthropic.default = error(500, "boom")
    job = run(labeling_job_create(album=album, enqueue=False))
    assert job.status == "failed"
    assert "2 requests in a row failed at the API" in job.error
    # Every request that reached the API is recorded, the one already in flight
    # when the job gave up included (whether the next one had started is up to
    # the thread pool), and each is counted once.
    assert job.failed_count == len(fake_anthropic.requests) in (2, 3)
    assert job.progress_done == job.failed_count
    assert LabelingItem.objects.filter(job=job).count() == job.failed_count


def test_cancel_stops_the_job_and_keeps_what_was_labeled(fake_anthropic, settings):
    settings.LABELING_CONCURRENCY = 1
    album, _ = album_of(5)
    job = labeling_job_create(album=album, enqueue=False)

    def cancel_after_two(current: LabelingJob) -> None:
        if current.progress_done == 2:
            run_request_cancel(current)

    job = run(job, on_progress=cancel_after_two)
    assert job.status == "cancelled"
    # The third request was already in flight: it is paid for, so it is kept;
    # nothing is sent after the cancel.
    assert job.labeled_count == len(fake_anthropic.requests) == 3
    assert Label.objects.filter(kind="caption").count() == 3


def test_a_resumed_job_skips_the_images_it_already_finished(fake_anthropic):
    album, images = album_of(4)
    job = labeling_job_create(album=album, enqueue=False)
    # An earlier attempt labeled the first image and then its worker died.
    LabelingItem.objects.create(job=job, image=images[0], outcome="labeled")
    job = run(job)
    assert (job.progress_done, job.progress_total) == (4, 4)
    assert len(fake_anthropic.requests) == 3
    assert not images[0].labels.exists()


def test_a_resumed_job_keeps_to_its_budget_at_the_price_it_learned(
    fake_anthropic, settings
):
    settings.LABELING_CONCURRENCY = 1
    album, _ = album_of(6)
    fake_anthropic.default = tool_reply(usage=(1000, 100))  # $0.0045 each
    job = run(labeling_job_create(album=album, budget_usd="0.01", enqueue=False))
    assert job.labeled_count == 2
    # Its worker died there; the job is delivered again with a larger budget.
    LabelingJob.objects.filter(pk=job.pk).update(
        status="queued", budget_usd=Decimal("0.02"), budget_exhausted=False
    )
    job = run(job)
    # Spent and learned: $0.009 for 2 images, so 2 more fit ($0.018 ≤ 0.02),
    # with no first request sent blind to learn the price again.
    assert job.labeled_count == 4
    assert job.cost_usd == Decimal("0.018")
    assert len(fake_anthropic.requests) == 4


def test_requests_in_flight_never_exceed_the_concurrency(fake_anthropic, settings):
    settings.LABELING_CONCURRENCY = 3
    fake_anthropic.latency = 0.15
    album, _ = album_of(9)
    job = run(labeling_job_create(album=album, enqueue=False))
    assert job.labeled_count == 9
    assert fake_anthropic.max_in_flight == 3


def test_a_selection_job_describes_each_image_in_its_album(fake_anthropic, settings):
    settings.LABELING_CONCURRENCY = 1  # requests in image order
    zodiac = make_album(name="Zodiac", trigger_word="zdc")
    image = make_image(album=zodiac, seed=1)
    loose = make_image(seed=2)
    fake_anthropic.default = tool_reply("a ram")
    job = run(labeling_job_create(images=[loose, image], enqueue=False))
    assert job.labeled_count == 2
    prompts = [r["messages"][0]["content"][1]["text"] for r in fake_anthropic.requests]
    assert ['"Zodiac"' in p for p in prompts] == [False, True]
    assert image.labels.get(kind="caption").text == "zdc, a ram"
    assert loose.labels.get(kind="caption").text == "a ram"


def test_limit_and_description_style(fake_anthropic):
    album, images = album_of(4)
    fake_anthropic.default = tool_reply("A tall card. It shows a tower.")
    job = run(
        labeling_job_create(album=album, style="description", limit=2, enqueue=False)
    )
    assert (job.labeled_count, job.progress_total) == (2, 2)
    assert images[0].labels.get(kind="description").prompt_version == "description-v1"
    assert not images[2].labels.exists()
    assert not Image.objects.filter(labels__kind="caption").exists()
