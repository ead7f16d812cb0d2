"""What callers ask for, declared once: the tuning and training requests.

The REST API validates bodies into these models, the job runner stores and reloads them, and the CLI
builds them from its options; nothing else restates their fields.
"""

from __future__ import annotations

import re
import unicodedata
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator

from seedcore.vocabulary import WarmStartMode, values

PRESETS = ("conservative", "default", "aggressive")
Preset = Literal["conservative", "default", "aggressive"]

EXPERIMENT_NAME_MAX = 256  # MLflow's own name column is VARCHAR(256), as are ours
# Characters that corrupt logs, paths and terminals: control characters, lone surrogates, line separators.
_UNPRINTABLE = ("Cc", "Cs", "Zl", "Zp")
# What the document says of text the validators refuse when blank (they keep their own messages).
NOT_BLANK = r"\S"
# experiment_name_problem as the document's pattern: not blank, no control character or line separator, no
# `..` segment (a lone surrogate cannot be sent as UTF-8 at all).
EXPERIMENT_NAME_PATTERN = r"^(?!\s*$)(?!.*(?:^|[/\\])\.\.(?:[/\\]|$))[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"


def experiment_name_problem(name: str) -> str | None:
    """Why `name` cannot be an experiment name, or None when it can.

    Artifact locations never derive from the name, yet a `..` segment is refused anyway: it can only be
    an attempt at traversal, and the name also shows up in paths of tools that read MLflow's store.
    """
    if not name.strip():
        return "must not be blank"
    bad = next((ch for ch in name if unicodedata.category(ch) in _UNPRINTABLE), None)
    if bad is not None:
        return f"must not contain control characters or lone surrogates (found U+{ord(bad):04X})"
    if ".." in re.split(r"[/\\]", name):
        return "must not contain a '..' path segment"
    return None


def _experiment_name(name: str) -> str:
    problem = experiment_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


ExperimentName = Annotated[str, Field(min_length=1, max_length=EXPERIMENT_NAME_MAX,
                                      description="MLflow experiment name (no control characters, no '..' "
                                                  "segment)", json_schema_extra={"pattern": EXPERIMENT_NAME_PATTERN}),
                           AfterValidator(_experiment_name)]


class StrictBody(BaseModel):
    # strict: "promote": "yes" or "version": "3" is the caller's mistake, not something to guess at
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _json_integers(cls, value: Any, info: ValidationInfo) -> Any:
        # JSON has one kind of number: 3.0 is the integer 3 to the document (JSON Schema), so it is here too
        kind = cls.model_fields[info.field_name].annotation
        if _whole(value) and _is_int(kind):
            return int(value)
        if isinstance(value, list) and get_origin(kind) is list and _is_int(get_args(kind)[0]):
            return [int(v) if _whole(v) else v for v in value]
        return value


def _whole(value: Any) -> bool:
    return type(value) is float and value.is_integer()


def _is_int(kind: Any) -> bool:
    """`int`, `int | None` or an annotated int."""
    if get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    if get_origin(kind) in (Union, UnionType):
        args = [a for a in get_args(kind) if a is not type(None)]
        return len(args) == 1 and _is_int(args[0])
    return kind is int


class _PatchBody(StrictBody):
    # no body changes nothing, as {} does
    model_config = ConfigDict(openapi_extra={"required": False})


def patch_model(body: type[BaseModel], name: str, doc: str) -> type[StrictBody]:
    """A PATCH body for `body`: every field optional (omitted = unchanged) with the type and bounds it has in
    `body`, so the document allows exactly the values the merged, re-validated body accepts."""
    def field(info) -> tuple[Any, Any]:
        kind = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        # no "default" in the document: omitted means unchanged, and null is a value only where `body` takes it
        return kind, Field(default=None, description=info.description,
                           json_schema_extra=lambda schema: schema.pop("default", None))

    return create_model(name, __base__=_PatchBody, __doc__=doc, __module__=body.__module__,
                        **{key: field(info) for key, info in body.model_fields.items()})


class DataFields(StrictBody):
    # every field has a default, so the body may be left out (it reads as {})
    model_config = ConfigDict(openapi_extra={"required": False})

    data_source: str | None = Field(default=None, description="CSV or Parquet path inside the data dir; "
                                                              "omit for the built-in dataset")
    label_column: str | None = Field(default=None, min_length=1)
    feature_columns: list[str] | None = Field(default=None, min_length=1, json_schema_extra={"uniqueItems": True})


Metric = Literal["auc", "logloss", "model_bytes", "predict_us", "training_time"]


class Objective(StrictBody):
    """One objective of a sweep: a metric and whether to maximise or minimise it."""

    metric: Metric
    mode: Literal["max", "min"]


class Bound(StrictBody):
    """A constraint on one metric of the registered trial."""

    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)


class TuneRequest(DataFields):
    """The guide's tuning request, plus the data source and promotion knobs."""

    space_type: Preset = "default"
    config_type: Preset = "default"
    custom_search_space: dict[str, Any] | None = Field(
        default=None, description='parameter -> constant or {"type": "uniform|loguniform|randint|quniform|choice", '
                                  '"lower": .., "upper": .., "q": .., "values": [..]}')
    custom_tune_config: dict[str, Any] | None = Field(
        default=None, description="num_samples, max_concurrent_trials, time_budget_s, grace_period, "
                                  "reduction_factor, seed, search_alg (random | tpe | qmc)")
    experiment_name: ExperimentName = "xgboost_tuning"
    promote: bool = Field(default=True, description="promote the winner through the champion gate")
    force: bool = Field(default=False, description="promote even if the champion is better")
    refit: bool = Field(default=True, description="retrain the winner on training + validation rows with the "
                                                  "rounds it earned, then score and register that model")
    warm_start: Literal[values(WarmStartMode)] = Field(
        default="none", description="start the search from the production version's hyperparameters, or from "
                                    "past sweeps on the same data (history)")
    objectives: list[Objective] | None = Field(
        default=None, min_length=1, max_length=5,
        description="what to optimise, first one first (ASHA prunes on it); several give a Pareto front")
    select: Literal["best", "knee"] | dict[str, Bound] = Field(
        default="best", description='which trial to register: "best" on the first objective, "knee" of the '
                                    'Pareto front, or the best on the first under constraints such as '
                                    '{"model_bytes": {"max": 200000}}')


class TrainRequest(DataFields):
    """Train one model with fixed hyperparameters (plus num_boost_round, early_stopping_rounds)."""

    params: dict[str, Any] = Field(default_factory=lambda: {"eta": 0.1, "max_depth": 6, "num_boost_round": 100},
                                   description="XGBoost parameters, constants only",
                                   json_schema_extra={"minProperties": 1})
    experiment_name: ExperimentName = "xgboost_training"
    promote: bool = False
    force: bool = False


# The sweep runner's name for a tuning request.
SweepRequest = TuneRequest
