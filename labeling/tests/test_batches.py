"""Labeling through the Message Batches API (real SDK, the local fake)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from albums.models import Image
from albums.tests.builders import make_album, make_image
from imagineer_project.errors import Invalid
from imagineer_project.runs import run_execute, run_request_cancel
from imagineer_project.testing.fake_anthropic import error, refusal, tool_reply
from labeling.claude import TOOL_NAME
from labeling.models import Label, LabelingJob
from labeling.runs import labeling_batches_poll, labeling_job_execute
from labeling.services import labeling_job_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_polls(settings) -> None:
    settings.LABELING_BATCH_POLL_SECONDS = 0  # the CLI's wait between polls


def album_of(n: int):
    album = make_album(name="Zodiac", trigger_word="zdc")
    return album, [make_image(album=album, seed=i) for i in range(n)]


def run(job: LabelingJob) -> LabelingJob:
    """The worker sends the batches and hands the job back waiting; the
    scheduled poller then finishes it (as often as it takes)."""
    run_execute(LabelingJob, job.pk, labeling_job_execute)
    job.refresh_from_db()
    for _ in range(10):
        if not job.waiting:
            break
        labeling_batches_poll()
        job.refresh_from_db()
    return job


def test_the_worker_is_free_while_the_batch_is_processed(fake_anthropic):
    album, _ = album_of(2)
    fake_anthropic.batch_polls = 3  # ended at the fourth look
    job = labeling_job_create(album=album, use_batch=True, enqueue=False)
    run_execute(LabelingJob, job.pk, labeling_job_execute)
    job.refresh_from_db()
    assert (job.status, job.waiting) == ("running", True)
    assert "Waiting for 1 Message Batch" in job.message

    assert labeling_batches_poll()["waiting"] == 1
    assert labeling_batches_poll()["waiting"] == 1
    assert labeling_batches_poll() == {
        "succeeded": 1,
        "waiting": 0,
        "cancelled": 0,
        "failed": 0,
    }
    job.refresh_from_db()
    assert (job.status, job.waiting, job.labeled_count) == ("succeeded", False, 2)
    assert labeling_batches_poll()["succeeded"] == 0  # nothing left to poll


def test_the_poller_is_scheduled_every_minute() -> None:
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="poll-message-batches")
    assert (schedule.func, schedule.minutes) == (
        "labeling.tasks.poll_message_batches",
        1,
    )


def test_a_batch_job_labels_like_direct_requests_at_half_the_price(fake_anthropic):
    album, images = album_of(3)
    fake_anthropic.default = tool_reply("a ram", tags=["ram"], usage=(1000, 100))
    job = run(labeling_job_create(album=album, use_batch=True, enqueue=False))

    assert job.status == "succeeded", job.error
    assert (job.labeled_count, job.failed_count) == (3, 0)
    assert (job.input_tokens, job.output_tokens) == (3000, 300)
    assert job.cost_usd == Decimal("0.006750")  # half of 3 × $0.0045
    [batch] = fake_anthropic.batches.values()
    assert [r["custom_id"] for r in batch["requests"]] == [
        f"image-{im.pk}" for im in images
    ]
    assert job.batches[0]["image_ids"] == [im.pk for im in images]
    assert job.batches[0]["recorded"] is True
    caption = images[0].labels.get(kind="caption")
    assert (caption.text, caption.source, caption.prompt_version) == (
        "zdc, a ram",
        "claude",
        "training-v1",
    )
    # No direct Messages request was made.
    assert not [r for r in fake_anthropic.requests if "custom_id" in r]
    assert len(fake_anthropic.requests) == 3  # the batch entries' params


def test_bad_entries_fail_their_image_and_the_rest_are_labeled(
    fake_anthropic, settings
):
    settings.LABELING_BATCH_SIZE = 2  # two batches: 2 + 1 images
    album, images = album_of(3)
    fake_anthropic.queue(tool_reply("one"), refusal(), error(400, "Image unreadable"))
    job = run(labeling_job_create(album=album, use_batch=True, enqueue=False))

    assert len(fake_anthropic.batches) == 2
    assert (job.labeled_count, job.failed_count) == (1, 2)
    reasons = dict(job.items.filter(outcome="failed").values_list("image", "reason"))
    assert reasons == {
        images[1].pk: "Claude declined to label this image (refusal).",
        images[2].pk: "API error in the batch: Image unreadable",
    }


def test_a_resumed_job_polls_its_batch_instead_of_sending_again(fake_anthropic):
    album, images = album_of(2)
    job = labeling_job_create(album=album, use_batch=True, enqueue=False)
    # An earlier attempt sent the batch, then its worker died.
    params = {"messages": [], "tool_choice": {"type": "tool", "name": TOOL_NAME}}
    sent = fake_anthropic._batch_create(
        [{"custom_id": f"image-{im.pk}", "params": params} for im in images]
    )
    LabelingJob.objects.filter(pk=job.pk).update(
        batches=[{"id": sent["id"], "image_ids": [im.pk for im in images]}]
    )
    job = run(job)

    assert job.status == "succeeded", job.error
    assert len(fake_anthropic.batches) == 1
    assert job.labeled_count == 2
    assert Label.objects.filter(kind="caption").count() == 2


def test_cancel_while_waiting_cancels_the_batch(fake_anthropic):
    fake_anthropic.batch_polls = 1000  # never ends on its own
    album, _ = album_of(2)
    job = labeling_job_create(album=album, use_batch=True, enqueue=False)
    job = run(job)
    assert (job.status, job.waiting) == ("running", True)

    assert run_request_cancel(job)  # noticed at the next poll
    assert labeling_batches_poll()["cancelled"] == 1
    job.refresh_from_db()
    assert (job.status, job.waiting) == ("cancelled", False)
    [batch] = fake_anthropic.batches.values()
    assert batch["status"] == "canceling"
    assert not Label.objects.exists()


def test_a_budget_and_a_batch_do_not_mix(fake_anthropic, call_as):
    album, _ = album_of(1)
    with pytest.raises(Invalid, match="A budget needs direct requests"):
        labeling_job_create(album=album, use_batch=True, budget_usd="1")
    response = call_as("token").post(
        f"/api/albums/{album.pk}/label",
        data=json.dumps({"batch": True, "budget": "1"}),
        content_type="application/json",
    )
    assert response.status_code == 422
    assert "A budget needs direct requests" in response.json()["error"]
    assert not LabelingJob.objects.exists()


def test_the_api_and_the_command_start_batch_jobs(fake_anthropic, call_as):
    from django.core.management import call_command

    album, images = album_of(1)
    response = call_as("token").post(
        f"/api/images/{images[0].pk}/label",
        data=json.dumps({"batch": True}),
        content_type="application/json",
    )
    assert response.status_code == 202 and response.json()["use_batch"] is True
    call_command("label", "--album", "Zodiac", "--batch", "--force", stdout=None)
    assert LabelingJob.objects.filter(use_batch=True).count() == 2
    assert Image.objects.get(pk=images[0].pk).labels.filter(kind="caption").exists()
