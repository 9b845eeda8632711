"""Reading what a process's /metrics said (Prometheus' text format), by metric name and
labels, with the parser of prometheus_client that wrote it."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called `name` (a counter's `_total`, a histogram's `_count`, ...) in
    scraped `text`: its labels and value."""
    return [
        (dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of the sample `name` whose labels are exactly `labels` (none: the one
    without labels); AssertionError naming it when `text` has no such sample."""
    for found, value in metric_samples(text, name):
        if found == labels:
            return value
    raise AssertionError(f"no sample {name}{labels or ''} in:\n{text}")
