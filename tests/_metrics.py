"""Helpers for reading `GET /metrics`: Prometheus text parsed with Prometheus' own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of a Prometheus text page."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(page: dict, name: str, **labels) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client) -> dict[tuple, float]:
    """The app's `GET /metrics` page as `samples`."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    return samples(response.get_data(as_text=True))


def grown(before: dict, after: dict, name: str, **labels) -> float:
    """How much one series grew between two scrapes (counters and histograms only grow)."""
    return value(after, name, **labels) - value(before, name, **labels)
