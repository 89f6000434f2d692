"""What labeling adds to GET /metrics (imagineer_project.metrics): the tokens
and estimated cost its jobs recorded, read at scrape time. Registered from
LabelingConfig.ready()."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Sum
from prometheus_client.core import CounterMetricFamily, Metric

from imagineer_project.metrics.collectors import metrics_register
from labeling.models import LabelingJob


def labeling_spend() -> Iterator[Metric]:
    """The tokens and estimated cost every labeling job has recorded, by
    model: the jobs' stored totals, so a job labelled on any worker counts."""
    tokens = CounterMetricFamily(
        "imagineer_labeling_tokens",
        "Tokens sent to and received from the labeling model, by model.",
        labels=["model", "direction"],
    )
    cost = CounterMetricFamily(
        "imagineer_labeling_cost_usd",
        "Estimated cost of labeling in US dollars, by model.",
        labels=["model"],
    )
    rows = (
        LabelingJob.objects.values("model_name")
        .annotate(i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost_usd"))
        .order_by("model_name")
    )
    for row in rows:
        model = row["model_name"]
        tokens.add_metric([model, "input"], row["i"] or 0)
        tokens.add_metric([model, "output"], row["o"] or 0)
        cost.add_metric([model], float(row["c"] or 0))
    yield tokens
    yield cost


metrics_register("labeling", labeling_spend)
