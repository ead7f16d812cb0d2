"""The organism, measured: `/xgboost/history` (long-term memory), `/xgboost/evolution` and the baselines it
measures against when asked (`POST /xgboost/evolution/baselines`), and the flywheel page at `/ui` (drawn by
api/page.py). Role "all" only. The ledger and evolution are the process's services
(`current_services().energy`, `.evolution`), fed by the job runner's watchers and the promotion service's
listeners (seedcore.services); model_info's `energy` is in api/serving.py."""

from __future__ import annotations

import logging

from flask import Response

from seedcore.api._http import BEARER, NOT_FOUND, WRITE_ERRORS, _error, api_blueprint, respond
from seedcore.api.page import page_data, render
from seedcore.api.schemas_organism import BaselineRequest, EvolutionResponse, HistoryQuery, HistoryResponse
from seedcore.api.schemas_xgboost import JobResponse
from seedcore.api.serving import model_info_body
from seedcore.api.xgboost import QUEUE_FULL, accepted
from seedcore.memory.history import history as long_term
from seedcore.organism.baselines import queue_baseline
from seedcore.services import current_services

log = logging.getLogger(__name__)

bp = api_blueprint("organism", __name__, url_prefix="/xgboost")
page_bp = api_blueprint("organism_page", __name__)
PAGE_SWEEPS = 10  # the page shows the evolution of the latest sweeps only (each sweep's trials come from MLflow)
PAGE = {"description": "the page: HTML with SVG charts, no script", "content": {"text/html": {"schema": {"type": "string"}}}}
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'"  # no script, nothing fetched: inline styles only


@bp.get("/history", summary="Long-term memory: every version's configuration, data, metrics over time, "
                             "trigger and energy, newest first", responses={200: HistoryResponse})
def history(query: HistoryQuery):
    """One page of `limit` versions from `offset` (the registry's, joined with our SQL); 503 without MLflow."""
    services = current_services()
    return respond(HistoryResponse, {"status": "success", **long_term(services.registry, services.database,
                                                                      query.limit, query.offset)})


@bp.get("/evolution", summary="Evolution: accuracy, smartness and adaptability per sweep and over time",
        responses={200: EvolutionResponse})
def evolution():
    return respond(EvolutionResponse, {"status": "success", **current_services().evolution.answer()})


@bp.post("/evolution/baselines", summary="Queue a baseline of a succeeded sweep (a whole sweep of the same size): "
                                         "the same sweep as a random search, or cold; answers 202 with its job id",
         responses={202: JobResponse, **NOT_FOUND, 409: _error("the job is not a succeeded sweep (yet)"),
                    **QUEUE_FULL, **WRITE_ERRORS}, security=BEARER)
def baseline(body: BaselineRequest):
    """The sweep's stored request re-submitted with warm start off and no promotion (organism.baselines); its
    trigger `random_baseline:<job_id>` or `cold_baseline:<job_id>`. 404 for an unknown job_id."""
    runner = current_services().runner
    job = runner.jobs.get(body.job_id)
    return accepted(queue_baseline(current_services().settings, job, body.kind,
                                   lambda request, trigger: runner.submit(request, trigger=trigger)))


@page_bp.get("/ui", summary="The flywheel page (HTML): production, live AUC, drift, jobs, monitors, incidents, "
                            "evolution, energy", responses={200: PAGE})
def ui():
    services = current_services()
    try:
        evolution_answer = services.evolution.answer(PAGE_SWEEPS)
    except Exception as exc:  # noqa: BLE001 - the page shows the rest when MLflow is away
        log.warning("the page shows no evolution: %s", exc)
        evolution_answer = None
    data = page_data(services.database, services.settings.model_name, model_info_body(), evolution_answer,
                     monitor_interval_s=services.settings.monitor_interval_s)
    response = Response(render(data), mimetype="text/html")
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    return response
