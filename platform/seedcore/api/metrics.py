"""`GET /metrics`: Prometheus text, with prometheus-client.

Counted as things happen (every process, every gunicorn worker: when `PROMETHEUS_MULTIPROC_DIR` is set,
as our server sets it, each worker writes its own files and a scrape adds them up): requests by endpoint
and status with latency histograms, predicted rows by model version, sweep durations and trial outcomes.
Read at scrape time, from the process answering: the served model version, jobs by state and trigger
(from SQL), and the live AUC and drift of the served version (from the prediction log).
"""

from __future__ import annotations

import logging
import os
import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from seedcore.api._http import api_blueprint
from seedcore.runtime.counters import LATENCY, REQUESTS
from seedcore.runtime.observability import MULTIPROC_ENV
from seedcore.services import services_of
from seedcore.db.tables_jobs import TuningJob
from seedcore.monitoring.feedback import live_metrics
from seedcore.monitoring.live import version_drift

log = logging.getLogger(__name__)

_UNMATCHED = "<unmatched>"  # a 404 path: never the caller's text as a label (unbounded cardinality)


bp = api_blueprint("metrics", __name__)


@bp.get("/metrics", summary="Prometheus metrics (text exposition format)",
        responses={200: {"description": "Prometheus text",
                         "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics():
    """Every counter, histogram and gauge, summed over this server's workers."""
    return _scrape(current_app)


def init_app(app: Flask) -> None:
    """Time and count every request; serve `/metrics`."""
    app.before_request(_start_timer)
    app.after_request(_count)
    app.register_api(bp)


def _start_timer() -> None:
    g.seedcore_started = time.perf_counter()


def _count(response):
    started = g.pop("seedcore_started", None)
    endpoint = request.url_rule.rule if request.url_rule is not None else _UNMATCHED
    REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    if started is not None:
        LATENCY.labels(endpoint, request.method).observe(time.perf_counter() - started)
    return response


def _scrape(app: Flask) -> Response:
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)  # every worker's files
    else:
        registry.register(_ThisProcess())
    registry.register(_StateNow(app))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


class _ThisProcess:
    def collect(self):
        return REGISTRY.collect()


class _StateNow:
    """What is true at scrape time: read, not counted (each part skipped when it cannot be read)."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        model = self._served_model()
        if model is not None:
            served = GaugeMetricFamily("seedcore_served_model_version", "Model version this process serves",
                                       labels=["model_name"])
            served.add_metric([model.name], float(model.version))
            yield served
        db = services_of(self.app).database
        if db is not None:
            yield from _guarded("jobs", lambda: [_jobs(db)])
            if model is not None:
                yield from _guarded("live metrics", lambda: _live(db, services_of(self.app).settings, model))

    def _served_model(self):
        holder = services_of(self.app).model
        return None if holder is None else holder.model


def _guarded(what: str, families):
    try:
        return list(families())
    except Exception as exc:  # a scrape answers with what it can read; the store being down is logged
        log.warning("/metrics: %s unavailable: %s", what, exc)
        return []


def _jobs(db) -> GaugeMetricFamily:
    from sqlalchemy import func, select


    family = GaugeMetricFamily("seedcore_jobs", "Jobs in our database, by state, trigger kind and job kind",
                               labels=["state", "trigger", "kind"])
    with db.session() as session:
        rows = session.execute(select(TuningJob.state, TuningJob.trigger, TuningJob.kind, func.count())
                               .group_by(TuningJob.state, TuningJob.trigger, TuningJob.kind)).all()
    totals: dict[tuple, int] = {}
    for state, trigger, kind, count in rows:  # `schedule:<id>` -> `schedule`: ids would be unbounded labels
        key = (state, (trigger or "").split(":", 1)[0], kind or "")
        totals[key] = totals.get(key, 0) + count
    for key, count in sorted(totals.items()):
        family.add_metric(list(key), count)
    return family


def _live(db, settings, model) -> list[GaugeMetricFamily]:
    """The served version's live AUC (over labelled predictions) and its worst feature drift (PSI)."""

    labels, values = ["model_version"], [str(model.version)]
    live = live_metrics(db, settings.model_name, model.version, rows=settings.live_window_rows)
    families = [GaugeMetricFamily("seedcore_live_labelled_predictions", "Labelled predictions in the live window",
                                  labels=labels)]
    families[0].add_metric(values, live["n"])
    if live["auc"] is not None:
        auc = GaugeMetricFamily("seedcore_live_auc", "AUC over the live window's labelled predictions", labels=labels)
        auc.add_metric(values, live["auc"])
        families.append(auc)
    drift = version_drift(db, settings, model.version, model.feature_names)
    if drift is not None and drift["psi_max"] is not None:  # none over too few rows (seedcore.monitoring.drift)
        psi = GaugeMetricFamily("seedcore_drift_psi_max", "Largest population stability index of any feature "
                                "(recent inputs against training)", labels=labels)
        psi.add_metric(values, drift["psi_max"])
        families.append(psi)
    return families
