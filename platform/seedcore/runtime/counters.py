"""What every process counts, as prometheus-client families: HTTP requests and their latency, predicted rows,
sweeps and their trials. `GET /metrics` (seedcore.api.metrics) adds them up over the server's workers."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("seedcore_http_requests", "HTTP requests answered, by route, method and status",
                   ["endpoint", "method", "status"])
LATENCY = Histogram("seedcore_http_request_duration_seconds", "Time to answer an HTTP request, by route and method",
                    ["endpoint", "method"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
PREDICTIONS = Counter("seedcore_predictions", "Rows predicted, by model version", ["model_version"])
SWEEPS = Histogram("seedcore_sweep_duration_seconds", "Wall time of a sweep, by how it ended", ["status"],
                   buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 86400))
TRIALS = Counter("seedcore_trials", "Trials ended, by outcome (completed, pruned, errored, killed)", ["outcome"])


def count_predictions(model_version, rows: int) -> None:
    """`rows` rows were predicted by `model_version`."""
    PREDICTIONS.labels(str(model_version)).inc(rows)


def record_sweep(status: str, duration_s: float, outcomes: dict[str, int]) -> None:
    """A sweep ended (`status`: succeeded, failed, cancelled) after `duration_s`, its trials so."""
    SWEEPS.labels(status).observe(duration_s)
    for outcome, count in outcomes.items():
        if count:
            TRIALS.labels(outcome).inc(count)
