"""Captions per draw: trigger first, kept tags, shuffled tags, dropout, tag counts."""

from __future__ import annotations

import random

from training.ml.captions import render_caption, split_tags, tag_frequency


def test_the_trigger_is_added_in_front_when_missing() -> None:
    rng = random.Random(0)
    assert render_caption("red hair, smile", trigger="zxq", rng=rng) == (
        "zxq, red hair, smile"
    )
    assert render_caption("", trigger="zxq", rng=rng) == "zxq"
    assert render_caption("red hair", trigger="", rng=rng) == "red hair"


def test_the_trigger_is_moved_to_the_front_when_elsewhere() -> None:
    rng = random.Random(0)
    assert render_caption("smile, ZXQ, red hair", trigger="zxq", rng=rng) == (
        "ZXQ, smile, red hair"
    )
    # Inside a sentence tag, the whole tag moves; "zxqy" is another word.
    assert (
        render_caption("zxqy, smile, a photo of zxq person", trigger="zxq", rng=rng)
        == "a photo of zxq person, zxqy, smile"
    )


def test_shuffling_keeps_the_trigger_and_kept_tags_and_the_set_of_tags() -> None:
    caption = "red hair, smile, a, b, c, d, e, f"
    rng = random.Random(7)
    renders = [
        render_caption(
            caption, trigger="zxq", shuffle_tags=True, keep_tokens=2, rng=rng
        )
        for _ in range(50)
    ]
    for render in renders:
        tags = split_tags(render)
        assert tags[:3] == ["zxq", "red hair", "smile"]
        assert sorted(tags[3:]) == ["a", "b", "c", "d", "e", "f"]
    assert len(set(renders)) > 10  # the order really changes between draws
    unshuffled = render_caption(caption, trigger="zxq", keep_tokens=2, rng=rng)
    assert unshuffled == "zxq, " + caption


def test_dropout_blanks_the_whole_caption_at_its_rate() -> None:
    rng = random.Random(1234)
    renders = [
        render_caption("zxq, red hair", trigger="zxq", dropout=0.3, rng=rng)
        for _ in range(1000)
    ]
    # Seeded, so an exact count (no flakiness), and about 30%; the trigger
    # goes too, as in sd-scripts.
    assert renders.count("") == 271
    assert 250 <= renders.count("") <= 350
    assert set(renders) == {"", "zxq, red hair"}


def test_the_same_seed_renders_the_same_captions() -> None:
    def draws(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [
            render_caption("a, b, c, d", shuffle_tags=True, dropout=0.2, rng=rng)
            for _ in range(20)
        ]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


def test_tag_frequency_counts_tags_as_written() -> None:
    captions = ["zxq, red hair, smile", "zxq , smile", "a photo of zxq", ""]
    assert tag_frequency(captions) == {
        "zxq": 2,
        "smile": 2,
        "red hair": 1,
        "a photo of zxq": 1,
    }
