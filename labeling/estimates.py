"""What labeling a selection would cost, said before it starts.

Images to label x tokens per image x the configured prices. Tokens per image
are measured: the mean of what past labeling requests with the configured
model used (each LabelingItem keeps its request's input and output tokens).
With nothing measured yet a prior stands in, said as such on the page: an
image at the size cap (LABELING_MAX_PIXELS, at Claude's ~750 pixels per
token) plus the prompt in, a caption with tags and a rating out.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Avg, Count, Exists, OuterRef, QuerySet

from albums.models import Image
from labeling import claude
from labeling.models import Label, LabelingItem, LabelingJob

PIXELS_PER_TOKEN = 750  # Claude's vision pricing: tokens = width * height / 750
PRIOR_PROMPT_TOKENS = 600  # the system prompt, album context and instructions
PRIOR_OUTPUT_TOKENS = 250  # a caption, ~15 tags, a rating and a confidence


@dataclass(frozen=True)
class TokensPerImage:
    input: float
    output: float
    measured: int  # labeled images measured; 0: the prior


@dataclass(frozen=True)
class CostEstimate:
    images: int  # images a job would send
    skipped: int  # already labeled by Claude with this prompt, left alone
    tokens: TokensPerImage
    cost_usd: Decimal

    def __str__(self) -> str:
        basis = (
            f"from {self.tokens.measured:,} measured label"
            f"{'s' if self.tokens.measured != 1 else ''}"
            if self.tokens.measured
            else "estimate, no measurement yet"
        )
        text = f"≈ ${self.cost_usd:,.2f} for {self.images:,} image"
        text += f"{'s' if self.images != 1 else ''} ({basis})"
        if self.skipped:
            text += f"; {self.skipped:,} already labeled are skipped"
        return text


def tokens_per_image(model_name: str | None = None) -> TokensPerImage:
    """Mean tokens per labeled image for `model_name` (default: the configured
    model), over every labeling request that reported its usage."""
    model_name = model_name or settings.LABELING_MODEL
    measured = LabelingItem.objects.filter(
        job__model_name=model_name,
        outcome=LabelingItem.Outcome.LABELED,
        input_tokens__gt=0,
    ).aggregate(n=Count("id"), inp=Avg("input_tokens"), out=Avg("output_tokens"))
    if measured["n"]:
        return TokensPerImage(measured["inp"], measured["out"] or 0, measured["n"])
    image = settings.LABELING_MAX_PIXELS / PIXELS_PER_TOKEN
    return TokensPerImage(image + PRIOR_PROMPT_TOKENS, PRIOR_OUTPUT_TOKENS, 0)


def _already_labeled(images: QuerySet[Image], style: str) -> QuerySet[Image]:
    """The images a job skips unless forced (labeling.runner: plan_job)."""
    kind = LabelingJob(style=style).label_kind
    return images.filter(
        Exists(
            Label.objects.filter(
                image=OuterRef("pk"),
                source=Label.Source.CLAUDE,
                kind=kind,
                prompt_version=claude.prompt_version(style),
            )
        )
    )


def labeling_estimate(
    *,
    images: QuerySet[Image],
    style: str = LabelingJob.Style.TRAINING,
    force: bool = False,
    batch: bool = False,
    tokens: TokensPerImage | None = None,
    total: int | None = None,
) -> CostEstimate:
    """What labeling `images` in `style` would cost (two COUNT queries, less
    the one for `total` when given, plus one for the measured tokens unless
    `tokens` is given). `batch`: at the Message Batches discount."""
    tokens = tokens or tokens_per_image()
    total = images.count() if total is None else total
    skipped = 0 if force else _already_labeled(images, style).count()
    count = total - skipped
    per_image = claude.request_cost(round(tokens.input), round(tokens.output))
    cost = per_image * count
    if batch:
        cost *= Decimal(str(settings.LABELING_BATCH_DISCOUNT))
    return CostEstimate(count, skipped, tokens, cost)


def labeling_estimates(images: QuerySet[Image]) -> dict[str, CostEstimate]:
    """The estimate for each choice the labeling form offers that changes it,
    keyed `<style>-<force 0/1>` (the batch discount is said beside them)."""
    tokens, total = tokens_per_image(), images.count()
    return {
        f"{style}-{int(force)}": labeling_estimate(
            images=images, style=style, force=force, tokens=tokens, total=total
        )
        for style in LabelingJob.Style.values
        for force in (False, True)
    }
