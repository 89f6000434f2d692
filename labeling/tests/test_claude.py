"""The labeler against the local Messages API fake, through the real SDK."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image as PILImage

from imagineer_project.testing import make_image_bytes
from imagineer_project.testing.fake_anthropic import (
    empty_reply,
    error,
    refusal,
    text_reply,
    tool_reply,
)
from labeling import claude
from labeling.claude import (
    AlbumContext,
    ImageLabelingFailed,
    LabelingAborted,
    LabelingNotConfigured,
)


def label(fake, data=None, **kwargs):
    data = data or make_image_bytes("PNG", (80, 60), seed=1)
    return claude.label_image(claude.make_client(), image_data=data, **kwargs)


def test_a_tool_call_becomes_caption_whole_tags_rating_and_usage(fake_anthropic):
    fake_anthropic.queue(
        tool_reply(
            "the moon card, two towers, a crayfish",
            tags=["Tarot Card", "night sky", "night sky", "  moon  "],
            nsfw_rating="SAFE",
            confidence=0.82,
            usage=(1234, 56),
        )
    )
    result = label(fake_anthropic, style="training")
    assert result.caption == "the moon card, two towers, a crayfish"
    assert result.tags == ["Tarot Card", "night sky", "moon"]
    assert (result.nsfw_rating, result.confidence) == ("SAFE", 0.82)
    assert (result.input_tokens, result.output_tokens) == (1234, 56)


def test_the_request_sends_the_image_first_and_forces_the_tool(fake_anthropic):
    data = make_image_bytes("PNG", (80, 60), seed=2)
    label(
        fake_anthropic,
        data,
        style="training",
        context=AlbumContext("Zodiac", "Twelve signs, gouache", "zdc"),
    )
    body = fake_anthropic.requests[0]
    assert body["model"] == "claude-sonnet-5-5"
    assert body["tool_choice"] == {"type": "tool", "name": claude.TOOL_NAME}
    assert body["tools"][0]["input_schema"]["properties"]["nsfw_rating"]["enum"] == [
        "SAFE",
        "SUGGESTIVE",
        "ADULT",
        "EXPLICIT",
    ]
    image_block, text_block = body["messages"][0]["content"]
    assert image_block["source"]["media_type"] == "image/png"
    assert base64.b64decode(image_block["source"]["data"]) == data  # small: as is
    assert '"Zodiac"' in text_block["text"] and "Twelve signs" in text_block["text"]
    assert 'trigger word "zdc"' in text_block["text"]


def test_the_trigger_word_leads_the_caption_even_if_claude_forgets(fake_anthropic):
    fake_anthropic.queue(tool_reply("a ram with golden horns"))
    result = label(
        fake_anthropic, style="training", context=AlbumContext("Z", "", "zdc")
    )
    assert result.caption == "zdc, a ram with golden horns"
    fake_anthropic.queue(tool_reply("ZDC, a bull"))
    result = label(
        fake_anthropic, style="training", context=AlbumContext("Z", "", "zdc")
    )
    assert result.caption == "ZDC, a bull"


def test_large_images_are_downscaled_within_the_pixel_and_edge_limits(fake_anthropic):
    data = make_image_bytes("JPEG", (3000, 1000), seed=3)
    label(fake_anthropic, data, style="training")
    block = fake_anthropic.requests[0]["messages"][0]["content"][0]
    sent = PILImage.open(io.BytesIO(base64.b64decode(block["source"]["data"])))
    assert block["source"]["media_type"] == "image/jpeg"
    assert sent.width <= 1568 and sent.width * sent.height <= 1_150_000
    assert sent.width / sent.height == pytest.approx(3, rel=0.01)


def test_an_animated_gif_sends_its_first_frame_as_a_still(fake_anthropic):
    frames = [PILImage.new("RGB", (40, 40), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    label(fake_anthropic, buf.getvalue(), style="training")
    block = fake_anthropic.requests[0]["messages"][0]["content"][0]
    sent = PILImage.open(io.BytesIO(base64.b64decode(block["source"]["data"])))
    assert not getattr(sent, "is_animated", False)
    assert sent.convert("RGB").getpixel((5, 5))[0] > 200  # red: frame 0


def test_an_overloaded_api_is_retried_honouring_retry_after(fake_anthropic):
    fake_anthropic.queue(error(529, "Overloaded", retry_after=0.01), tool_reply("ok"))
    assert label(fake_anthropic, style="training").caption == "ok"
    assert len(fake_anthropic.requests) == 2


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (refusal(), "Claude declined to label this image (refusal)."),
        (empty_reply(), "Empty reply: no labels came back."),
        (text_reply("I see a cat."), "Invalid reply: expected the record_image_labels"),
        (
            tool_reply(nsfw_rating="NSFW"),
            "Invalid reply: nsfw_rating must be one of SAFE, SUGGESTIVE, ADULT, "
            "EXPLICIT, not 'NSFW'",
        ),
        (tool_reply(caption="  "), "Invalid reply: the caption is missing or empty"),
        (tool_reply(confidence=7), "Invalid reply: confidence must be between 0 and 1"),
        (tool_reply(tags="a, b"), "Invalid reply: tags must be a list of strings"),
        (error(400, "Image too small"), "API error 400: Image too small"),
    ],
)
def test_bad_replies_fail_the_image_with_the_reason(fake_anthropic, reply, reason):
    fake_anthropic.queue(reply)
    with pytest.raises(ImageLabelingFailed) as info:
        label(fake_anthropic, style="training")
    assert info.value.reason.startswith(reason)


def test_a_json_text_reply_is_accepted_when_no_tool_was_called(fake_anthropic):
    fake_anthropic.queue(
        text_reply(
            '```json\n{"caption": "a fox", "tags": ["fox"], '
            '"nsfw_rating": "suggestive", "confidence": 0.5}\n```'
        )
    )
    result = label(fake_anthropic, style="description")
    assert (result.caption, result.nsfw_rating) == ("a fox", "SUGGESTIVE")


def test_a_refused_key_aborts(fake_anthropic, settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-wrong"
    with pytest.raises(LabelingAborted, match="check ANTHROPIC_API_KEY"):
        label(fake_anthropic, style="training")


def test_no_key_is_a_clear_error_before_any_request(settings):
    settings.ANTHROPIC_API_KEY = ""
    with pytest.raises(LabelingNotConfigured, match="set ANTHROPIC_API_KEY"):
        claude.make_client()


@pytest.mark.parametrize(
    ("threshold", "flagged"),
    [
        ("ADULT", ["ADULT", "EXPLICIT"]),
        ("SUGGESTIVE", ["SUGGESTIVE", "ADULT", "EXPLICIT"]),
        ("EXPLICIT", ["EXPLICIT"]),
    ],
)
def test_the_nsfw_threshold_is_a_setting(settings, threshold, flagged):
    settings.LABELING_NSFW_THRESHOLD = threshold
    assert [r for r in claude.NSFW_RATINGS if claude.rating_is_nsfw(r)] == flagged


def test_cost_uses_the_configured_prices(settings):
    settings.LABELING_PRICE_INPUT_PER_MTOK = 3.0
    settings.LABELING_PRICE_OUTPUT_PER_MTOK = 15.0
    assert str(claude.request_cost(1_000_000, 100_000)) == "4.500000"


def test_the_demo_fake_describes_the_images_average_colour(fake_anthropic):
    from imagineer_project.testing.fake_anthropic import colour_reply

    fake_anthropic.default = colour_reply
    buf = io.BytesIO()
    PILImage.new("RGB", (50, 50), (210, 30, 30)).save(buf, "PNG")
    result = label(fake_anthropic, buf.getvalue(), style="training")
    assert result.caption == "a mostly red picture, simple shapes, flat colour"
    assert result.tags[0] == "red picture"
