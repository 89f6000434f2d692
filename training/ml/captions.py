"""Captions as the trainer shows them: trigger word first, tags shuffled, dropout.

A caption is a list of comma-separated tags ("zxq, 1girl, red hair") or one
sentence (a single tag). Each time an image is drawn its caption is rendered
anew, so shuffling and dropout vary from epoch to epoch.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable


def split_tags(caption: str) -> list[str]:
    """The caption's comma-separated tags, stripped, empty ones left out."""
    return [tag.strip() for tag in caption.split(",") if tag.strip()]


def render_caption(
    caption: str,
    *,
    trigger: str = "",
    shuffle_tags: bool = False,
    keep_tokens: int = 0,
    dropout: float = 0.0,
    rng: random.Random,
) -> str:
    """The caption of one draw of an image.

    - With probability `dropout` the caption is "" - the trigger word
      included. That follows sd-scripts (which drops the whole caption text,
      where the trigger is written) and is the point of caption dropout: the
      model also learns the concept unconditioned, the branch classifier-free
      guidance subtracts. A caption that kept its trigger would instead train
      "trigger alone", a different technique.
    - Otherwise the trigger comes first: its tag is moved to the front when
      the caption has it (a tag equal to it, or else the first tag containing
      it as a word, so "a photo of zxq" moves whole), and it is added as its
      own first tag when the caption lacks it.
    - The next `keep_tokens` tags stay in place; with `shuffle_tags` the rest
      are shuffled. `keep_tokens` counts after the trigger, which always stays.

    `rng` is drawn from only when dropout or shuffling happen, so a seeded
    rng gives the same captions on every run.
    """
    if dropout > 0 and rng.random() < dropout:
        return ""
    tags = split_tags(caption)
    if trigger.strip():
        tags = _trigger_first(tags, trigger.strip())
    fixed = (1 if trigger.strip() else 0) + max(0, keep_tokens)
    head, tail = tags[:fixed], tags[fixed:]
    if shuffle_tags and len(tail) > 1:
        rng.shuffle(tail)
    return ", ".join(head + tail)


def _trigger_first(tags: list[str], trigger: str) -> list[str]:
    lowered = trigger.lower()
    exact = [i for i, tag in enumerate(tags) if tag.lower() == lowered]
    if exact:
        found = exact[0]
    else:
        word = re.compile(rf"(?<!\w){re.escape(trigger)}(?!\w)", re.IGNORECASE)
        found = next((i for i, tag in enumerate(tags) if word.search(tag)), -1)
    if found < 0:
        return [trigger, *tags]
    return [tags[found], *tags[:found], *tags[found + 1 :]]


def tag_frequency(captions: Iterable[str]) -> dict[str, int]:
    """How many times each tag occurs over the captions (as written, not rendered).

    The counts behind sd-scripts' `ss_tag_frequency`, which tools show as the
    LoRA's "training tags".
    """
    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(split_tags(caption))
    return dict(counts.most_common())
