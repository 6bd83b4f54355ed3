"""Read a /metrics page the way Prometheus does (prometheus_client's own text parser), so tests
assert on samples and labels, not on the exposition's spelling or label order."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value; 0 for a series that does not exist (a counter never moved)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def families(text: str) -> dict[str, str]:
    """Family name -> type (counter, histogram)."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}
