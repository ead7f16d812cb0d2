"""What the predict and feedback endpoints share: a request's rows as a matrix (naming the exact cell at
fault), the answer's prediction ids (rows logged in the background), model_info with live metrics and energy."""

from __future__ import annotations

import logging

import numpy as np

from seedcore.api.schemas_serving import PredictRequest
from seedcore.errors import SeedcoreError, ValidationError
from seedcore.organism.ledger import ledger
from seedcore.runtime.counters import count_predictions
from seedcore.serving.model import ServedModel
from seedcore.services import current_services

log = logging.getLogger(__name__)
_F32_MAX = float(np.finfo(np.float32).max)


def log_predictions(model: ServedModel, x: np.ndarray, predictions: list[float]) -> list[str]:
    """Ids for a predict answer's rows; the rows are logged in the background (never fails predict)."""
    count_predictions(model.version, len(predictions))
    return current_services().prediction_log.log(model.name, model.version, x.tolist(), predictions)


def served_info(info: dict) -> dict:
    """model_info with live metrics and drift from the prediction log (holdout figures if it is down)."""
    from seedcore.monitoring.live import enrich_model_info  # loaded when first asked for (model_info)

    services = current_services()
    return enrich_model_info(info, services.prediction_log.database(), services.settings)


def served_energy(info: dict) -> dict | None:
    """model_info's `energy` for the served version (seedcore.organism.ledger); where the energy meter runs
    (role "all") a missed break-even is remembered as it is seen. None when the ledger cannot be read (logged)."""
    services, version = current_services(), int(info["version"])
    try:
        energy = ledger(services.settings, services.prediction_log.database(), version, info.get("holdout"))
        if services.energy is not None:
            services.energy.check_break_even(version, energy)
        return energy
    except SeedcoreError as exc:
        log.warning("energy ledger unavailable: %s", exc.message)
        return None


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
