"""The Claude labeler: prompt, image preparation, the tool schema, reply parsing.

One request per image through the official `anthropic` SDK. Claude must answer
by calling the `record_image_labels` tool, whose JSON schema makes the reply
structured (caption, whole-phrase tags, an NSFW rating from a closed set, a
confidence). Anything else (a refusal, an empty or malformed reply) is an
`ImageLabelingFailed` for that image, never a guess: the predecessor parsed free
text and read "NSFW" as safe.

Nothing here touches the database; `labeling.runner` does.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from PIL import Image as PILImage
from PIL import ImageOps

from imagineer_project.errors import Unavailable

if TYPE_CHECKING:
    # Imported where a request is made: the SDK costs about a second at every
    # Django start (each web and worker process, every manage.py command).
    import anthropic

logger = logging.getLogger(__name__)

TOOL_NAME = "record_image_labels"
NSFW_RATINGS = ("SAFE", "SUGGESTIVE", "ADULT", "EXPLICIT")
MAX_TAGS = 30
MAX_TAG_CHARS = 80
MAX_CAPTION_CHARS = 2000

# Bump a version whenever its prompt or schema changes: labels record it, and a
# job skips images already labeled by the same version unless forced.
PROMPT_VERSIONS = {"training": "training-v1", "description": "description-v1"}

TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "caption": {
            "type": "string",
            "description": "The caption, following the instructions for its style.",
        },
        "tags": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Short phrases for what is visible (subject, style, "
            "medium, colours, setting). Keep multi-word phrases whole.",
        },
        "nsfw_rating": {
            "type": "string",
            "enum": list(NSFW_RATINGS),
            "description": "SAFE: fine for anyone. SUGGESTIVE: revealing or "
            "provocative, no nudity. ADULT: nudity or strong violence. "
            "EXPLICIT: sexual activity or graphic gore.",
        },
        "confidence": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "How sure you are that the caption and rating are right.",
        },
    },
    "required": ["caption", "tags", "nsfw_rating", "confidence"],
    "additionalProperties": False,
}

_SYSTEM = (
    "You label images for people who build fine-tuning datasets for themed art "
    "(card decks, tarot, zodiac, museum collections). Describe only what is "
    "visible. Never invent names, artists or text you cannot read. Always answer "
    f"by calling the {TOOL_NAME} tool exactly once."
)

_STYLE_INSTRUCTIONS = {
    "training": (
        "Write a training caption for Stable Diffusion 1.5: one line, at most "
        "about 60 words, no full sentences needed. Start with the main subject, "
        "then pose and action, then setting, then style, medium and colours. "
        "Comma-separated phrases are good. No opinions, no 'an image of'."
    ),
    "description": (
        "Write a description of the image for a catalogue: two to four plain "
        "sentences covering subject, composition, style and any legible text."
    ),
}


class LabelingNotConfigured(Unavailable):
    """No API key: raised before a job is created, so nothing is queued for nothing."""

    code = "labeling_not_configured"


class ImageLabelingFailed(Exception):
    """This image could not be labeled; the job records why and goes on."""

    def __init__(
        self,
        reason: str,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        api_error: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        # The request failed at the API (after the SDK's retries), not the image.
        self.api_error = api_error


class LabelingAborted(Exception):
    """The whole job must stop (a rejected API key, no permission)."""


@dataclass(frozen=True)
class AlbumContext:
    name: str = ""
    description: str = ""
    trigger_word: str = ""


@dataclass(frozen=True)
class LabelResult:
    caption: str
    tags: list[str]
    nsfw_rating: str
    confidence: float
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def require_configured() -> None:
    if not settings.ANTHROPIC_API_KEY:
        raise LabelingNotConfigured(
            "Labeling with Claude needs an API key: set ANTHROPIC_API_KEY in the "
            "environment (or .env) of the web server and the worker, then restart."
        )


def make_client() -> anthropic.Anthropic:
    import anthropic

    require_configured()
    return anthropic.Anthropic(
        api_key=settings.ANTHROPIC_API_KEY,
        base_url=settings.ANTHROPIC_BASE_URL or None,
        max_retries=settings.ANTHROPIC_MAX_RETRIES,
        timeout=settings.ANTHROPIC_TIMEOUT,
    )


def prompt_version(style: str) -> str:
    return PROMPT_VERSIONS[style]


def request_cost(input_tokens: int, output_tokens: int) -> Decimal:
    """Estimated USD for one request at the configured per-million prices."""
    per_in = Decimal(str(settings.LABELING_PRICE_INPUT_PER_MTOK))
    per_out = Decimal(str(settings.LABELING_PRICE_OUTPUT_PER_MTOK))
    cost = (input_tokens * per_in + output_tokens * per_out) / Decimal(1_000_000)
    return cost.quantize(Decimal("0.000001"))


# --- the image --------------------------------------------------------------------

_SENDABLE = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def fit_size(width: int, height: int) -> tuple[int, int]:
    """The largest size within LABELING_MAX_EDGE and LABELING_MAX_PIXELS."""
    scale = min(
        1.0,
        settings.LABELING_MAX_EDGE / max(width, height),
        math.sqrt(settings.LABELING_MAX_PIXELS / (width * height)),
    )
    return max(1, int(width * scale)), max(1, int(height * scale))


def prepare_image(data: bytes) -> tuple[str, bytes]:
    """(media type, bytes) ready to send: small enough, first frame, a format the
    API takes. Unchanged when it already fits (no re-encoding loss)."""
    with PILImage.open(io.BytesIO(data)) as im:
        fmt = im.format or ""
        animated = getattr(im, "is_animated", False)
        target = fit_size(*im.size)
        if fmt in _SENDABLE and not animated and target == im.size:
            return _SENDABLE[fmt], data
        if fmt == "JPEG":
            im.draft("RGB", target)  # decode at reduced scale: much faster
        im.seek(0)
        frame = ImageOps.exif_transpose(im.copy())
    frame.thumbnail(target, PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    if frame.mode in ("RGBA", "LA", "P") and _has_alpha(frame):
        frame.convert("RGBA").save(out, "PNG", optimize=False)
        return "image/png", out.getvalue()
    frame.convert("RGB").save(out, "JPEG", quality=90)
    return "image/jpeg", out.getvalue()


def _has_alpha(im: PILImage.Image) -> bool:
    return im.mode in ("RGBA", "LA") or "transparency" in im.info


# --- the request ------------------------------------------------------------------


def build_prompt(style: str, context: AlbumContext | None) -> str:
    parts = [_STYLE_INSTRUCTIONS[style]]
    if context and context.name:
        about = f'The image belongs to the collection "{context.name}"'
        if context.description:
            about += f", described as: {context.description.strip()[:1000]}"
        parts.append(about + ". Use that as context, not as a fact about this image.")
    if style == "training" and context and context.trigger_word:
        parts.append(
            f'Begin the caption with the trigger word "{context.trigger_word}" '
            "followed by a comma."
        )
    parts.append(
        "Tags: 5 to 20 short phrases, lowercase, each kept whole "
        '("red dress", not "red" and "dress").'
    )
    return "\n\n".join(parts)


def request_params(
    *,
    image_data: bytes,
    style: str,
    context: AlbumContext | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """The Messages API parameters for one image (a direct request, or one
    entry of a Message Batch)."""
    media_type, payload = prepare_image(image_data)
    image_block = {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": media_type,
            "data": base64.b64encode(payload).decode("ascii"),
        },
    }
    return {
        "model": model or settings.LABELING_MODEL,
        "max_tokens": settings.LABELING_MAX_TOKENS,
        "system": _SYSTEM,
        "tools": [
            {
                "name": TOOL_NAME,
                "description": "Record the caption, tags and NSFW rating.",
                "input_schema": TOOL_SCHEMA,
            }
        ],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
        "messages": [
            {
                "role": "user",
                "content": [
                    image_block,
                    {"type": "text", "text": build_prompt(style, context)},
                ],
            }
        ],
    }


def label_image(
    client: anthropic.Anthropic,
    *,
    image_data: bytes,
    style: str,
    context: AlbumContext | None = None,
    model: str | None = None,
) -> LabelResult:
    """Ask Claude for one image's labels. Raises ImageLabelingFailed for this
    image, LabelingAborted when no further request can succeed."""
    params = request_params(
        image_data=image_data, style=style, context=context, model=model
    )
    with api_errors(params["model"]):
        message = client.messages.create(**params)
    return parse_reply(message, style=style, context=context)


@contextmanager
def api_errors(model: str) -> Iterator[None]:
    """Map the SDK's errors (after its own retries) to what a job does next:
    LabelingAborted stops the job, ImageLabelingFailed fails one image."""
    import anthropic

    try:
        yield
    except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
        raise LabelingAborted(
            f"The Anthropic API refused the key ({exc.status_code}): check "
            "ANTHROPIC_API_KEY."
        ) from exc
    except anthropic.NotFoundError as exc:
        raise LabelingAborted(
            f"The model {model!r} was not found: check LABELING_MODEL."
        ) from exc
    except anthropic.APIStatusError as exc:
        raise ImageLabelingFailed(
            f"API error {exc.status_code}: {_api_message(exc)}",
            api_error=exc.status_code >= 500 or exc.status_code == 429,
        ) from exc
    except anthropic.APIConnectionError as exc:
        raise ImageLabelingFailed(
            f"Could not reach the API: {exc}", api_error=True
        ) from exc


def _api_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    return str(error.get("message") or exc.message)[:300]


# --- the reply --------------------------------------------------------------------


def parse_reply(
    message: Any, *, style: str = "training", context: AlbumContext | None = None
) -> LabelResult:
    """Turn a Messages API reply into a LabelResult, or say exactly why not."""
    usage = getattr(message, "usage", None)
    tokens = {
        "input_tokens": int(getattr(usage, "input_tokens", 0) or 0),
        "output_tokens": int(getattr(usage, "output_tokens", 0) or 0),
    }
    if getattr(message, "stop_reason", None) == "refusal":
        raise ImageLabelingFailed(
            "Claude declined to label this image (refusal).", **tokens
        )
    data = _reply_data(message)
    if data is None:
        raise ImageLabelingFailed("Empty reply: no labels came back.", **tokens)
    try:
        caption, tags, rating, confidence = _validated(data)
    except ValueError as exc:
        raise ImageLabelingFailed(f"Invalid reply: {exc}", **tokens) from exc
    if style == "training" and context and context.trigger_word:
        caption = with_trigger_word(caption, context.trigger_word)
    return LabelResult(
        caption=caption,
        tags=tags,
        nsfw_rating=rating,
        confidence=confidence,
        model=str(getattr(message, "model", "") or ""),
        raw=data,
        **tokens,
    )


def _reply_data(message: Any) -> dict[str, Any] | None:
    """The tool call's input; failing that, a JSON object in a text block."""
    blocks = list(getattr(message, "content", None) or [])
    for block in blocks:
        if getattr(block, "type", None) == "tool_use" and block.name == TOOL_NAME:
            return block.input if isinstance(block.input, dict) else {}
    for block in blocks:
        text = (getattr(block, "text", None) or "").strip()
        if getattr(block, "type", None) != "text" or not text:
            continue
        text = text.removeprefix("```json").removeprefix("```").removesuffix("```")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ImageLabelingFailed(
                f"Invalid reply: expected the {TOOL_NAME} tool, got text {text[:80]!r}"
            ) from exc
        return data if isinstance(data, dict) else {}
    return None


def _validated(data: dict[str, Any]) -> tuple[str, list[str], str, float]:
    caption = data.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError("the caption is missing or empty")
    rating = data.get("nsfw_rating")
    if not isinstance(rating, str) or rating.strip().upper() not in NSFW_RATINGS:
        raise ValueError(
            f"nsfw_rating must be one of {', '.join(NSFW_RATINGS)}, not {rating!r}"
        )
    confidence = data.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise ValueError(f"confidence must be a number, not {confidence!r}")
    if not 0 <= confidence <= 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    raw_tags = data.get("tags")
    if not isinstance(raw_tags, list) or not all(isinstance(t, str) for t in raw_tags):
        raise ValueError("tags must be a list of strings")
    return (
        " ".join(caption.split())[:MAX_CAPTION_CHARS],
        clean_tags(raw_tags),
        rating.strip().upper(),
        float(confidence),
    )


def clean_tags(tags: list[str]) -> list[str]:
    """Trimmed, whitespace-collapsed, de-duplicated (case-insensitively) phrases,
    kept whole: "red dress" stays one tag."""
    seen: set[str] = set()
    out: list[str] = []
    for tag in tags:
        phrase = " ".join(tag.split()).strip(" ,;.")[:MAX_TAG_CHARS]
        if phrase and phrase.casefold() not in seen:
            seen.add(phrase.casefold())
            out.append(phrase)
    return out[:MAX_TAGS]


def with_trigger_word(caption: str, trigger_word: str) -> str:
    """The caption with the trigger word first (once), whatever Claude did."""
    word = trigger_word.strip()
    if not word:
        return caption
    if caption.casefold().startswith(word.casefold()):
        return caption
    return f"{word}, {caption}"


def rating_is_nsfw(rating: str) -> bool:
    """At or above LABELING_NSFW_THRESHOLD."""
    return NSFW_RATINGS.index(rating) >= NSFW_RATINGS.index(
        settings.LABELING_NSFW_THRESHOLD
    )
