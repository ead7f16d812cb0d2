"""`/xgboost` serving endpoints: predict, batch_predict, refresh_model, model_info, list_models.

Every process (role "all" or "serve", every WSGI worker) holds its own `ModelHolder`, which loads the
registry's production version at start and polls the alias; the predict path makes no MLflow call.
"""

from __future__ import annotations

import logging
import os

from flask import jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from seedcore import names
from seedcore.api._http import BEARER, PREDICT_ERRORS, WRITE_ERRORS, api_blueprint
from seedcore.api._served import log_predictions, request_matrix, served_energy, served_info
from seedcore.api.schemas_serving import (BatchPredictRequest, BatchPredictResponse, ListModelsQuery,
                                          ListModelsResponse, ModelInfoResponse, PredictRequest,
                                          PredictResponse, RefreshResponse)
from seedcore.serving.batch import predict_table
from seedcore.errors import SeedcoreError
from seedcore.memory.incidents import record_refresh
from seedcore.memory.store import IncidentStore, PayloadLimits
from seedcore.memory.working import etag_of
from seedcore.serving.model import ServedModel, blessed_path_of
from seedcore.runtime.store_health import first_line
from seedcore.services import current_services

log = logging.getLogger(__name__)

PREFIX = "/xgboost"
bp = api_blueprint("serving", __name__, url_prefix=PREFIX)

# open unless SEEDCORE_PREDICT_TOKEN is set (the guard asks for it then): it computes an answer and changes nothing
@bp.post("/predict", summary="Predict with the production model: one row or many",
         responses={200: PredictResponse, **PREDICT_ERRORS})
def predict(body: PredictRequest):
    """`features` -> `prediction`; `instances` -> `predictions`; both name the model version. At most
    SEEDCORE_MAX_PREDICT_ROWS rows and SEEDCORE_MAX_PREDICT_BYTES of body (413 beyond)."""
    model = current_services().model.require()  # read once: this request uses this version throughout
    x, single = request_matrix(body, model)
    prob = model.predict(x).tolist()
    ids = log_predictions(model, x, prob)  # background write; never fails the answer
    answer = {"status": "success", "model_name": model.name, "model_version": model.version}
    if single:
        answer.update(prediction=prob[0], probability=prob[0], rows=1, prediction_id=ids[0])
    else:
        answer.update(predictions=prob, rows=len(prob), prediction_ids=ids)
    return jsonify(answer)


@bp.post("/batch_predict", summary="Predict a CSV/Parquet file of the data dir into a new Parquet file",
         responses={200: BatchPredictResponse, **WRITE_ERRORS, **PREDICT_ERRORS}, security=BEARER)
def batch_predict(body: BatchPredictRequest):
    """Streams the file chunk by chunk; the whole file is predicted by one model version."""
    model = current_services().model.require()
    result = predict_table(model, current_services().settings, body.data_source, body.feature_columns)
    return jsonify({"status": "success", "output_path": str(result.output_path),
                    "output_source": result.output_source, "rows": result.rows, "chunks": result.chunks,
                    "feature_columns": result.feature_columns, "model_name": model.name,
                    "model_version": result.model_version})


@bp.post("/refresh_model", summary="Load the registry's production version now",
         responses={200: RefreshResponse, **WRITE_ERRORS}, security=BEARER)
def refresh_model():
    """Swap to the alias's version if it moved (remembered as a `model_refreshed` incident); 404 before any
    promotion, 503 if the registry is down."""
    holder = current_services().model
    outcome = holder.refresh()
    model = outcome.model
    if outcome.changed:
        _remember_refresh(model, outcome.previous_version)
    message = ("Model refreshed successfully" if outcome.changed
               else f"Model already up to date: serving version {model.version}")
    return jsonify({"status": "success", "message": message, "changed": outcome.changed,
                    "model_name": model.name, "model_version": model.version,
                    "previous_version": outcome.previous_version,
                    "current_model_path": blessed_path_of(holder.settings, model.version) or model.model_uri})


def _remember_refresh(model: ServedModel, previous: int | None) -> None:
    """The swap's flashbulb incident; the swap stands even if it cannot be written (logged)."""
    # role "all": the /mfb store; role "serve": the same database, through the prediction log's connection
    services = current_services()
    store = services.incidents or IncidentStore(services.prediction_log.database(),
                                                limits=PayloadLimits.of(services.settings))
    try:
        record_refresh(store, model.version, previous, model_name=model.name, pid=os.getpid())
    except (SeedcoreError, SQLAlchemyError) as exc:
        detail = exc.message if isinstance(exc, SeedcoreError) else first_line(str(exc))
        log.error("refresh to %s version %s not recorded in flashbulb memory: %s", model.name, model.version, detail)


@bp.get("/model_info", summary="The served model: version, metrics, hyperparameters, lineage, energy",
        responses={200: ModelInfoResponse})
def model_info():
    """Always 200: no model yet is a state (`status: no_model_loaded`), not an error. Answered from the
    process's working memory (seedcore.memory.working) with a weak ETag; `If-None-Match` with it gives 304
    while nothing but the poll's time changed."""
    body, status = model_info_body(), current_services().model.status()
    response = jsonify({**body, "serving": status})
    # weak: the same model, metrics and serving state, whenever the poll last looked at the alias
    response.set_etag(etag_of([body, {k: v for k, v in status.items() if k != "last_checked_at"}]), weak=True)
    return response.make_conditional(request)


def model_info_body() -> dict:
    """model_info without `serving`, validated as it is built; held in working memory for the served version
    (a promotion, feedback or a ledger change drops it; a swap changes its key)."""
    services = current_services()
    holder = services.model
    described = holder.describe()

    def build() -> dict:
        if described is None:
            info = {"status": "no_model_loaded", "name": holder.settings.model_name, "alias": names.PRODUCTION_ALIAS}
        else:  # live metrics, drift and the energy ledger
            info = {**served_info(described), "status": "success", "energy": served_energy(described)}
        checked = ModelInfoResponse.model_validate({**info, "serving": holder.status()}).model_dump(mode="json")
        checked.pop("serving")
        return checked
    if described is None:
        return build()
    return services.working.get(("model_info", described["version"], described["loaded_at"]), build).value


@bp.get("/list_models", summary="Registry versions newest first, paginated", responses={200: ListModelsResponse})
def list_models(query: ListModelsQuery):
    """One page of `limit` versions from `offset`; 503 if the registry cannot be reached."""
    holder = current_services().model
    page = current_services().registry.list_versions(limit=query.limit, offset=query.offset)
    served = holder.model.version if holder.model else None
    models = [{**item, "served": item["version"] == served} for item in page["items"]]
    end = query.offset + len(models)
    body = {"status": "success", "models": models, "total": page["total"], "limit": query.limit,
            "offset": query.offset, "next_offset": end if end < page["total"] else None, "served_version": served}
    return jsonify(ListModelsResponse.model_validate(body).model_dump(mode="json"))
