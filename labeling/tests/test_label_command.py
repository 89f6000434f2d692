"""`manage.py label`: foreground run with progress and a cost summary."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from albums.tests.builders import make_album, make_image
from imagineer_project.testing.fake_anthropic import refusal, tool_reply
from labeling.models import Label, LabelingJob

pytestmark = pytest.mark.django_db


def label(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("label", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_labels_an_album_and_reports_the_cost(fake_anthropic, settings):
    settings.LABELING_CONCURRENCY = 1
    album = make_album(name="Tarot deck")
    for seed in range(3):
        make_image(album=album, seed=seed)
    fake_anthropic.queue(tool_reply(usage=(1000, 100)), refusal(usage=(1000, 0)))
    fake_anthropic.default = tool_reply(usage=(1000, 100))
    out, err = label("--album", "Tarot deck", "--limit", "3")
    assert "2 labeled, 0 skipped, 1 failed" in out
    assert (
        "3,000 input and 200 output tokens with claude-sonnet-5-5: about $0.0120" in out
    )
    assert "1 image(s) failed" in out
    assert "3/3" in err  # the progress bar
    assert Label.objects.filter(kind="caption").count() == 2


def test_rerun_skips_and_force_relabels(fake_anthropic):
    album = make_album(name="Zodiac")
    make_image(album=album, seed=1)
    label("--album", "zodiac")
    out, _ = label("--album", "zodiac")
    assert "0 labeled, 1 skipped" in out
    out, _ = label("--album", "zodiac", "--force", "--style", "training")
    assert "1 labeled, 0 skipped" in out
    assert Label.objects.filter(kind="caption").count() == 1


def test_enqueue_hands_the_job_to_the_worker(fake_anthropic):
    make_album(name="Zodiac")
    out, _ = label("--album", "Zodiac", "--enqueue")
    assert out.startswith("Queued labeling job #")
    assert LabelingJob.objects.get().status == "queued"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--album", "nope"], "No album named 'nope'."),
        (["--album", "Zodiac", "--budget", "abc"], "--budget must be an amount"),
        (["--album", "Zodiac", "--budget", "0"], "--budget must be more than 0"),
        (["--album", "Zodiac", "--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_bad_arguments_are_clear_errors(fake_anthropic, args, message):
    make_album(name="Zodiac")
    with pytest.raises(CommandError, match=message):
        label(*args)
    assert not LabelingJob.objects.exists()


def test_no_api_key_is_a_clear_error():
    make_album(name="Zodiac")
    with pytest.raises(CommandError, match="set ANTHROPIC_API_KEY"):
        label("--album", "Zodiac")
