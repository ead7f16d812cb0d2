"""`/xgboost` serving endpoints: predict, batch_predict, refresh_model, model_info, list_models.

Every process (role "all" or "serve", every WSGI worker) holds its own `ModelHolder`, which loads the
registry's production version at start and polls the alias; the predict path makes no MLflow call.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from flask import Flask, current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError

from seedcore import names
from seedcore.api._http import BEARER, PREDICT_ERRORS, WRITE_ERRORS, api_blueprint
from seedcore.api.mfb import STORE_EXTENSION as INCIDENTS
from seedcore.api.monitoring import log_predictions, predlog, served_info
from seedcore.api.schemas_serving import (BatchPredictRequest, BatchPredictResponse, ListModelsQuery,
                                          ListModelsResponse, ModelInfoResponse, PredictRequest,
                                          PredictResponse, RefreshResponse)
from seedcore.serving.batch import predict_table
from seedcore.errors import SeedcoreError, ValidationError
from seedcore.memory.incidents import record_refresh
from seedcore.memory.store import IncidentStore, PayloadLimits
from seedcore.serving.model import ModelHolder, ServedModel, blessed_path_of
from seedcore.runtime.store_health import first_line

log = logging.getLogger(__name__)

PREFIX = "/xgboost"
bp = api_blueprint("serving", __name__, url_prefix=PREFIX)

_F32_MAX = float(np.finfo(np.float32).max)


def init_app(app: Flask) -> None:
    """Load the production model and start this process's poll thread; teardown stops it."""
    holder = ModelHolder(app.config["SEEDCORE_SETTINGS"]).start()
    app.extensions["seedcore_model"] = holder
    app.extensions.setdefault("seedcore_stop", []).append(holder.stop)


def model_holder() -> ModelHolder:
    return current_app.extensions["seedcore_model"]


# open unless SEEDCORE_PREDICT_TOKEN is set (the guard asks for it then): it computes an answer and changes nothing
@bp.post("/predict", summary="Predict with the production model: one row or many",
         responses={200: PredictResponse, **PREDICT_ERRORS})
def predict(body: PredictRequest):
    """`features` -> `prediction`; `instances` -> `predictions`; both name the model version. At most
    SEEDCORE_MAX_PREDICT_ROWS rows and SEEDCORE_MAX_PREDICT_BYTES of body (413 beyond)."""
    model = model_holder().require()  # read once: this request uses this version throughout
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
    model = model_holder().require()
    result = predict_table(model, current_app.config["SEEDCORE_SETTINGS"], body.data_source, body.feature_columns)
    return jsonify({"status": "success", "output_path": str(result.output_path),
                    "output_source": result.output_source, "rows": result.rows, "chunks": result.chunks,
                    "feature_columns": result.feature_columns, "model_name": model.name,
                    "model_version": result.model_version})


@bp.post("/refresh_model", summary="Load the registry's production version now",
         responses={200: RefreshResponse, **WRITE_ERRORS}, security=BEARER)
def refresh_model():
    """Swap to the alias's version if it moved (remembered as a `model_refreshed` incident); 404 before any
    promotion, 503 if the registry is down."""
    holder = model_holder()
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
    store = current_app.extensions.get(INCIDENTS) or IncidentStore(
        predlog().database(), limits=PayloadLimits.of(current_app.config["SEEDCORE_SETTINGS"]))
    try:
        record_refresh(store, model.version, previous, model_name=model.name, pid=os.getpid())
    except (SeedcoreError, SQLAlchemyError) as exc:
        detail = exc.message if isinstance(exc, SeedcoreError) else first_line(str(exc))
        log.error("refresh to %s version %s not recorded in flashbulb memory: %s", model.name, model.version, detail)


@bp.get("/model_info", summary="The served model: version, metrics, hyperparameters, lineage",
        responses={200: ModelInfoResponse})
def model_info():
    """Always 200: no model yet is a state (`status: no_model_loaded`), not an error."""
    holder = model_holder()
    described, status = holder.describe(), holder.status()
    if described is None:
        info = {"status": "no_model_loaded", "name": holder.settings.model_name, "alias": names.PRODUCTION_ALIAS}
    else:
        info = {**served_info(described), "status": "success"}  # live metrics and drift
    return jsonify(ModelInfoResponse.model_validate({**info, "serving": status}).model_dump(mode="json"))


@bp.get("/list_models", summary="Registry versions newest first, paginated", responses={200: ListModelsResponse})
def list_models(query: ListModelsQuery):
    """One page of `limit` versions from `offset`; 503 if the registry cannot be reached."""
    holder = model_holder()
    page = holder.registry.list_versions(limit=query.limit, offset=query.offset)
    served = holder.model.version if holder.model else None
    models = [{**item, "served": item["version"] == served} for item in page["items"]]
    end = query.offset + len(models)
    body = {"status": "success", "models": models, "total": page["total"], "limit": query.limit,
            "offset": query.offset, "next_offset": end if end < page["total"] else None, "served_version": served}
    return jsonify(ListModelsResponse.model_validate(body).model_dump(mode="json"))


# -- predict input: JSON rows -> float32 matrix, naming the exact cell at fault ------------------
def request_matrix(body: PredictRequest, model: ServedModel) -> tuple[np.ndarray, bool]:
    """The request's rows as a float32 matrix (null -> NaN) and whether it was a single row."""
    if body.features is not None and body.instances is not None:
        raise ValidationError("give either features (one row) or instances (several rows), not both", field="body")
    if body.features is not None:
        return np.array([row_values(body.features, "features", model)], dtype=np.float32), True
    if body.instances is None:
        raise ValidationError(f"give features (one row of {len(model.feature_names)} numbers) "
                              "or instances (a list of rows)", field="body")
    if not isinstance(body.instances, list) or not body.instances:
        raise ValidationError("must be a non-empty list of rows", field="instances")
    rows = [row_values(row, f"instances.{i}", model) for i, row in enumerate(body.instances)]
    return np.array(rows, dtype=np.float32), False


def row_values(row, where: str, model: ServedModel) -> list:
    """One row as values in feature order: a list by position or an object keyed by feature name."""
    expected = model.feature_names
    if isinstance(row, list):
        if len(row) != len(expected):
            raise ValidationError(f"expected {len(expected)} feature values in the order {list(expected)}, "
                                  f"got {len(row)}", field=where)
        _check_numbers(row, where, range(len(row)))
        return row
    if isinstance(row, dict):
        unknown = [key for key in row if key not in model.index]
        if unknown:
            raise ValidationError(f"unknown feature {unknown[0]!r}; expected names {list(expected)}",
                                  field=f"{where}.{unknown[0]}")
        missing = [name for name in expected if name not in row]
        if missing:
            raise ValidationError(f"feature {missing[0]!r} is missing (use null for a missing value); "
                                  f"expected names {list(expected)}", field=f"{where}.{missing[0]}")
        values = [row[name] for name in expected]
        _check_numbers(values, where, expected)
        return values
    raise ValidationError(f"a row must be a list of {len(expected)} numbers or an object keyed by feature "
                          f"name, got {_json_type(row)}", field=where)


def _check_numbers(values: list, where: str, labels) -> None:
    """Numbers (finite in float32) or null; JSON true/false, strings, arrays and objects are 400."""
    for label, value in zip(labels, values):
        kind = type(value)
        if kind is float or kind is int:
            if -_F32_MAX <= value <= _F32_MAX or value != value:  # NaN counts as missing, like null
                continue
            raise ValidationError(f"{value!r} is out of range (finite numbers only)", field=f"{where}.{label}")
        if value is not None:
            raise ValidationError(f"must be a number or null, got {_json_type(value)}", field=f"{where}.{label}")


def _json_type(value) -> str:
    for kind, name in ((bool, "boolean"), (str, "string"), (list, "array"), (dict, "object"), (int, "number"),
                       (float, "number"), (type(None), "null")):
        if isinstance(value, kind):
            return f"{name} {value!r}" if kind in (bool, str) else name
    return type(value).__name__
