"""Request and response bodies of the serving endpoints (`/xgboost/predict`, `batch_predict`,
`refresh_model`, `model_info`, `list_models`); the OpenAPI document is built from them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from seedcore.api._http import MAX_INT
from seedcore.api.schemas_organism import Energy
from seedcore.data_checks import F32_MAX

# A model sees float32: a larger number is refused (400) as out of range, so the document bounds it too.
_NUMBER_OR_NULL = {"anyOf": [{"type": "number", "minimum": -F32_MAX, "maximum": F32_MAX}, {"type": "null"}]}
_ROW_LIST = {"type": "array", "items": _NUMBER_OR_NULL, "description": "values in the model's feature order"}
_ROW_OBJECT = {"type": "object", "additionalProperties": _NUMBER_OR_NULL,
               "description": "values keyed by feature name; every feature must be present (null = missing)"}

# Rows are validated by the view itself (it names the exact offending cell, e.g. `instances.3.f2`);
# pydantic only sees their JSON schema, which documents them.
FeaturesRow = Annotated[Any, WithJsonSchema({"anyOf": [_ROW_LIST, _ROW_OBJECT]})]


def instance_rows(max_rows: int | None = None) -> Any:
    """Several rows, documented (at most `max_rows` of them where the view caps them)."""
    cap = {} if max_rows is None else {"maxItems": max_rows}
    return Annotated[Any, WithJsonSchema({"type": "array", "minItems": 1, **cap,
                                          "items": {"anyOf": [_ROW_LIST, _ROW_OBJECT]}})]


InstanceRows = instance_rows()


class PredictRequest(BaseModel):
    """Give `features` (one row) or `instances` (several rows), not both. null means missing."""

    model_config = ConfigDict(extra="forbid")
    features: FeaturesRow = Field(None, description="one row: 10 numbers, or an object keyed by feature name")
    instances: InstanceRows = Field(None, description="several rows, each a list or an object; at most "
                                                      "SEEDCORE_MAX_PREDICT_ROWS (413 beyond)")


class PredictResponse(BaseModel):
    """`prediction` and `probability` (the same number) for `features`; `predictions` for `instances`."""

    status: Literal["success"]
    model_name: str
    model_version: int
    prediction: float | None = Field(None, description="single row only: P(class 1)")
    probability: float | None = Field(None, description="single row only: same as prediction")
    predictions: list[float] | None = Field(None, description="instances only: one probability per row")
    rows: int
    prediction_id: str | None = Field(None, description="single row only: the id to send feedback for")
    prediction_ids: list[str] | None = Field(None, description="instances only: one id per row, for feedback")


class BatchPredictRequest(BaseModel):
    """A CSV or Parquet file inside the data dir (relative, or absolute within it)."""

    model_config = ConfigDict(extra="forbid")
    data_source: str = Field(..., min_length=1)
    feature_columns: list[str] | None = Field(
        None, description="file columns feeding the model's features, in feature order (default: the "
                          "model's feature names); the model's own names in any order are matched by name")


class BatchPredictResponse(BaseModel):
    """Predictions went to a new Parquet file with columns `row` (0-based input row) and `prediction`."""

    status: Literal["success"]
    output_path: str
    output_source: str = Field(..., description="the output path relative to the data dir")
    rows: int
    chunks: int
    feature_columns: list[str]
    model_name: str
    model_version: int


class RefreshResponse(BaseModel):
    """The guide's shape plus which version is served now and whether it changed."""

    status: Literal["success"]
    message: str
    changed: bool
    model_name: str
    model_version: int
    previous_version: int | None
    current_model_path: str = Field(..., description="the blessed file when it holds this version, else "
                                                     "the registry URI models:/<name>/<version>")


class ServingStatus(BaseModel):
    """This process's view of its served model (also under `model` in GET /health)."""

    state: Literal["ready", "no_model_loaded", "registry_unavailable"]
    serving: bool
    model_name: str
    version: int | None
    source: Literal["registry", "blessed_file"] | None
    loaded_at: str | None
    alias: str
    alias_version: int | None = Field(..., description="where the alias pointed at the last successful check")
    last_checked_at: str | None
    last_error: str | None
    poll_interval_s: float
    pid: int
    detail: str


class ModelInfoResponse(BaseModel):
    """200 in every state: `status` is `success` with a model, `no_model_loaded` before any promotion
    (then the model fields are null or empty and `serving.detail` says what to do)."""

    status: Literal["success", "no_model_loaded"]
    name: str
    version: int | None = None
    alias: str
    stage: str | None = None
    source_run_id: str | None = None
    experiment_name: str | None = None
    metrics: dict[str, float | int | str | None] = Field(
        default_factory=dict, description='auc and logloss: live ("source": "live", over "n" labelled rows) once '
                                          'enough feedback arrived, else the holdout figures ("source": "holdout")')
    drift: dict[str, Any] | None = Field(None, description="psi_max and the worst features' PSI over recent inputs; "
                                           "below min_rows logged rows psi_max is null and status says so")
    validation: dict[str, float | None] = Field(default_factory=dict)
    holdout: dict[str, float | None] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    feature_names: list[str] = Field(default_factory=list)
    dataset: dict[str, Any] = Field(default_factory=dict)
    trained_at: str | None = None
    promoted_at: str | None = None
    created_at: str | None = None
    loaded_at: str | None = None
    source: Literal["registry", "blessed_file"] | None = None
    model_uri: str | None = None
    blessed_path: str | None = None
    energy: Energy | None = Field(None, description="the energy ledger of the served version (README: the organism)")
    serving: ServingStatus


class ListModelsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=MAX_INT)


class ModelVersionInfo(BaseModel):
    """One registry version as `GET list_models` shows it."""

    name: str
    version: int
    aliases: list[str]
    stage: str | None
    source_run_id: str | None
    experiment_name: str | None = None
    metrics: dict[str, float | None]
    validation: dict[str, float | None]
    holdout: dict[str, float | None]
    hyperparameters: dict[str, Any]
    feature_names: list[str]
    trained_at: str | None
    promoted_at: str | None
    created_at: str | None
    served: bool = Field(..., description="this process serves this version now")


class ListModelsResponse(BaseModel):
    """Registry versions, newest first."""

    status: Literal["success"]
    models: list[ModelVersionInfo]
    total: int
    limit: int
    offset: int
    next_offset: int | None = Field(..., description="offset of the next page, null on the last one")
    served_version: int | None
