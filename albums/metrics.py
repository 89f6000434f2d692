"""What albums add to GET /metrics (imagineer_project.metrics): the stored
images by how they came in, read at scrape time. Registered from
AlbumsConfig.ready()."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from albums.models import Image
from imagineer_project.metrics.collectors import metrics_register


def images_by_source() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "imagineer_images",
        "Stored images by how they came in (upload, scrape, generated, ...).",
        labels=["source_kind"],
    )
    counts = dict(
        Image.objects.values_list("source_kind").annotate(n=Count("pk")).order_by()
    )
    kinds = [value for value, _ in Image._meta.get_field("source_kind").choices]
    for kind in dict.fromkeys([*kinds, *counts]):
        family.add_metric([kind], counts.get(kind, 0))
    yield family


metrics_register("images", images_by_source)
