"""Settings: every knob, declared once with its type, range and meaning; read from SEEDCORE_* variables.

`Settings(...)` takes only what it is given (tests pass their own); `Settings.from_env()` also reads the
environment. A bad value stops start-up with a ValidationError naming the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from seedcore.names import MAX_REQUEST_ROWS
from seedcore.errors import ValidationError, invalid
from seedcore.names import BLESSED_DIRNAME

ENV_PREFIX = "SEEDCORE_"
# a sweep's refit on every CPU from this many rows, below on a trial's threads (why: tuning/winner.py)
REFIT_ALL_CPUS_ROWS = 200_000


def _sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


class Settings(BaseSettings):
    """Everything configurable. Each field's description is what the README's settings table shows."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore",
                                      validate_default=True, populate_by_name=True)

    data_dir: Path = Field(default_factory=lambda: Path("data"),
                           description="inputs for data_source, predictions, the blessed model, our SQLite file")
    mlruns_dir: Path = Field(default_factory=lambda: Path("mlruns"),
                             description="MLflow's embedded store (SQLite + artifacts)")
    tracking_uri: str | None = Field(default=None, description="MLflow tracking URI (default: sqlite:///<mlruns>/mlflow.db)")
    registry_uri: str | None = Field(default=None, description="MLflow registry URI (default: the tracking URI)")
    database_url: str | None = Field(default=None, description="our SQL database (default: sqlite:///<data>/seedcore.db; "
                                                               "PostgreSQL: postgresql://user:pw@host/db)")
    ray_address: str | None = Field(default=None, validation_alias=AliasChoices("ray_address", "SEEDCORE_RAY_ADDRESS",
                                                                                "RAY_ADDRESS"),
                                    description="a Ray cluster to join (also RAY_ADDRESS); local Ray otherwise")
    api_token: str | None = Field(default=None, description="when set, state-changing endpoints need "
                                                            "`Authorization: Bearer <token>`")
    model_name: str = Field(default="utility_risk_model", min_length=1, max_length=200,
                            description="registered model name")
    host: str = Field(default="127.0.0.1", min_length=1, description="address the API (and MLflow UI) bind to")
    port: int = Field(default=8000, ge=1, le=65535, description="API port")
    mlflow_ui_port: int = Field(default=5000, ge=1, le=65535, description="MLflow UI port (`seedcore up`)")
    instance_id: str | None = Field(default=None, min_length=1, max_length=200,
                                    description="an id `GET /health` echoes as `instance_id`, so whoever started "
                                                "this process can tell its answer from another server's "
                                                "(`scripts/local-cluster` sets one)")
    max_trials: int = Field(default=200, ge=1, le=100_000, description="cap on trials per sweep")
    max_time_budget_s: float = Field(default=4 * 3600, gt=0, le=7 * 86400, description="cap on a sweep's time budget")
    preset_max_trials: int | None = Field(default=None, ge=1, le=100_000,
                                          description="trials a preset runs at most: a preset asking for more "
                                                      "(default 50, aggressive 100) runs this many; a "
                                                      "custom_tune_config num_samples is not trimmed; unset: the "
                                                      "presets' own numbers")
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=2**31,
                                   description="cap on a request body (413 beyond)")
    max_predict_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=2**31,
                                   description="cap on the body of `/xgboost/predict`, `/xgboost/feedback` and "
                                               "`/xgboost/batch_predict` (413 beyond, refused from its "
                                               "Content-Length before it is read)")
    max_predict_rows: int = Field(default=MAX_REQUEST_ROWS, ge=1, le=MAX_REQUEST_ROWS,
                                  description="rows one predict or feedback request may carry (`instances`, "
                                              "`prediction_ids`, `labels`; 413 beyond)")
    max_heavy_requests: int = Field(default=2, ge=1, le=256,
                                    description="large predict or feedback requests (over 64 KiB) and "
                                                "batch_predicts each process answers at once; beyond it a 429 "
                                                "with `Retry-After`")
    read_header_timeout_s: float = Field(default=10.0, gt=0, le=3600,
                                         description="time a client has to send a request's headers, from "
                                                     "connecting or from the previous answer (408 after; an idle "
                                                     "connection is closed)")
    read_body_timeout_s: float = Field(default=60.0, gt=0, le=3600,
                                       description="time a client has to send a request's body once its headers "
                                                   "are in (408 after); no thread waits for it meanwhile")
    allowed_hosts: str | None = Field(default=None, min_length=1, max_length=4000,
                                      description="comma list of the `Host` names (`name` or `name:port`, `*` "
                                                  "wildcards) the API answers to; `*` allows all; unset: the "
                                                  "bound host:port and localhost:port (127.0.0.1 too on a "
                                                  "loopback bind; any IP address on 0.0.0.0); others are a 403")
    predict_token: str | None = Field(default=None, min_length=1,
                                      description="when set, `/xgboost/predict`, `/xgboost/batch_predict` and "
                                                  "`/xgboost/feedback` need `Authorization: Bearer <token>` (this "
                                                  "one or SEEDCORE_API_TOKEN)")
    poll_interval_s: float = Field(default=5.0, ge=0.05, le=86400,
                                   description="how often serving checks the production alias")
    min_delta: float = Field(default=0.0, ge=0, le=1, description="AUC a challenger must gain to be promoted")
    max_concurrent_sweeps: int = Field(default=1, ge=1, le=64, description="sweeps the runner runs at once")
    cpus_per_trial: int = Field(default=1, ge=1, le=1024, description="CPUs (and XGBoost threads) per trial")
    batch_chunk_rows: int = Field(default=100_000, ge=1, le=100_000_000, description="rows per batch_predict chunk")
    max_features: int = Field(default=10_000, ge=2, le=1_000_000,
                              description="cap on the columns of a data file (features, label and any other); "
                                          "a wider file is a 400, found from its header before any data is read")
    serve_workers: int = Field(default=2, ge=1, le=256, description="WSGI workers of `seedcore serve`")
    blessed_history: int = Field(default=3, ge=1, le=100,
                                 description="earlier blessed model directories kept beside the current one")
    promotion_lock_timeout_s: float = Field(default=30.0, gt=0, le=3600,
                                            description="how long a promotion waits for another one to finish "
                                                        "(409 after)")
    store_check_timeout_s: float = Field(default=2.0, gt=0, le=60,
                                         description="time `/health`, and the write probe before a "
                                                     "write, give each store (MLflow, our database) to answer")
    max_json_depth: int = Field(default=32, ge=2, le=200, description="deepest nesting of any JSON we accept "
                                "(request bodies, stored JSON); deeper is a 400")
    predlog_sample_rate: float = Field(default=1.0, ge=0, le=1,
                                       description="share of predicted rows written to the prediction log")
    predlog_max_rows: int = Field(default=1_000_000, ge=100, le=1_000_000_000,
                                  description="prediction log cap on rows still waiting for a label: the oldest "
                                              "unlabelled rows beyond it are deleted; labelled rows never count "
                                              "against it")
    predlog_max_labelled_rows: int = Field(default=1_000_000, ge=100, le=1_000_000_000,
                                           description="prediction log cap on labelled rows (feedback, kept for "
                                                       "live metrics and retraining): beyond it the rows labelled "
                                                       "longest ago are deleted")
    predlog_max_age_h: float = Field(default=30 * 24.0, gt=0, le=10 * 365 * 24.0,
                                     description="how long (hours) a logged prediction waits for its label: "
                                                 "unlabelled rows older than this are deleted (feedback for them "
                                                 "is `expired`); labelled rows are kept, up to their own cap")
    predlog_queue_rows: int = Field(default=100_000, ge=100, le=10_000_000,
                                    description="rows waiting for the log writer; beyond it rows are dropped, "
                                                "never waited for")
    live_window_rows: int = Field(default=1000, ge=10, le=10_000_000,
                                  description="live metrics and drift: the last N labelled (or logged) rows")
    live_min_rows: int = Field(default=100, ge=10, le=10_000_000,
                               description="labelled rows before model_info shows the live AUC")
    monitor_interval_s: float = Field(default=60.0, ge=0.05, le=86400,
                                      description="how often `seedcore up` checks monitors and schedules")
    ray_dashboard_port: int | None = Field(default=None, ge=0, le=65535,
                                           description="Ray dashboard port of the local Ray that `seedcore up` "
                                                       "starts (bound to 127.0.0.1); unset: 8265 or the next free "
                                                       "port; 0: no dashboard")
    ray_num_cpus: int | None = Field(default=None, ge=1, le=4096,
                                     description="CPUs the local Ray that the platform starts offers to trials "
                                                 "(`ray start --num-cpus`), and the XGBoost threads of a single "
                                                 f"training and of a sweep's refit on {REFIT_ALL_CPUS_ROWS:,} rows or "
                                                 "more; unset: every CPU of the machine")
    ray_storage: str | None = Field(default=None, min_length=1, max_length=2000,
                                    description="where Ray Tune keeps trial checkpoints on a cluster: a path every "
                                                "node mounts (NFS) or a URI such as s3://bucket/prefix; unset: the "
                                                "driver's own disk, reached from other nodes through Ray")
    max_failures: int = Field(default=2, ge=0, le=20,
                              description="times Ray Tune retries a trial whose worker or node died (from its "
                                          "last checkpoint, on any live node; the same MLflow run goes on); 0: "
                                          "such a trial fails at once")
    checkpoint_interval_s: float = Field(default=30.0, gt=0, le=7 * 86400,
                                         description="a trial checkpoints its booster at a report at most this "
                                                     "often (seconds of its training), besides at its end: a "
                                                     "retried trial goes on from its last checkpoint and trains "
                                                     "only the remaining rounds; shorter trials never write one "
                                                     "mid-trial")
    replicas: str | None = Field(default=None, max_length=4000, pattern=r"^https?://[^,\s]+(,https?://[^,\s]+)*$",
                                 description="the serving replicas' base URLs, comma-separated "
                                             "(http://host:port): `GET /health` lists each with the versions "
                                             "it runs and serves, or why it does not answer")
    max_sync_waits: int = Field(default=2, ge=1, le=64,
                                description="requests that may wait at once for a job (`/xgboost/tune`, "
                                            "`/xgboost/train`); beyond it a 429 points at `/xgboost/tune/submit`")
    max_queued_jobs: int = Field(default=50, ge=1, le=100_000,
                                 description="jobs that may wait in the queue at once; beyond it a new sweep or "
                                             "training (REST, schedule or monitor) is refused with a 429 and "
                                             "`Retry-After`")
    max_triggered_sweeps_per_day: int = Field(default=24, ge=0, le=100_000,
                                              description="sweeps that schedules and monitors together may start "
                                                          "in any 24 hours (0: none); a trigger beyond it is "
                                                          "refused and recorded as a `triggered_sweep_refused` "
                                                          "incident")
    sync_wait_timeout_s: float = Field(default=600.0, gt=0, le=7 * 86400,
                                       description="how long a synchronous `/xgboost/tune` or `/xgboost/train` "
                                                   "waits; after it the job goes on and the answer is a 202 with "
                                                   "its job id")
    stop_timeout_s: float = Field(default=6.0, ge=0.5, le=600,
                                  description="on SIGTERM/SIGINT, how long a running job gets to cancel cleanly "
                                              "before it is marked cancelled and its runs KILLED")
    log_format: Literal["text", "json"] = Field(default="text", description="log lines as text, or one JSON "
                                                                            "object a line for log collectors")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO",
                                                                     description="the least severe log lines shown")
    max_incident_payload_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024,
                                            description="cap on a flashbulb incident's payload as JSON (413 beyond)")
    watts_per_cpu: float = Field(default=3.5, gt=0, le=1000,
                                 description="watts one busy CPU draws, turning the energy ledger's CPU-seconds into "
                                             "joules (default: Cloud Carbon Footprint's average maximum per vCPU on "
                                             "AWS, 3.5 W)")
    joules_per_nat: float = Field(default=1.0, gt=0, le=1e12,
                                  description="what one nat of prediction error (logloss summed over predictions) "
                                              "is worth in joules, so the ledger can weigh error against tuning "
                                              "cost; an exchange rate to set, not a measurement")

    @model_validator(mode="after")
    def _derive(self) -> "Settings":
        object.__setattr__(self, "data_dir", Path(self.data_dir).resolve())
        object.__setattr__(self, "mlruns_dir", Path(self.mlruns_dir).resolve())
        if self.tracking_uri is None:
            object.__setattr__(self, "tracking_uri", _sqlite_uri(self.mlruns_dir / "mlflow.db"))
        if self.registry_uri is None:
            object.__setattr__(self, "registry_uri", self.tracking_uri)
        if self.database_url is None:
            object.__setattr__(self, "database_url", _sqlite_uri(self.data_dir / "seedcore.db"))
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings, file_secret_settings):
        # Only what the caller passes; `from_env` adds the environment.
        return (init_settings,)

    @property
    def artifact_root(self) -> str:
        """Where MLflow artifacts go for experiments we create."""
        return (self.mlruns_dir / "artifacts").as_uri()

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def blessed_dir(self) -> Path:
        return self.models_dir / BLESSED_DIRNAME

    @property
    def replica_urls(self) -> list[str]:
        return [url.rstrip("/") for url in (self.replicas or "").split(",") if url]

    @property
    def local_cpus(self) -> int:
        """The CPUs the platform's work uses on this machine: its local Ray's, and the threads of the training that
        runs in this process once no trial runs (a sweep's refit, a single training)."""
        return self.ray_num_cpus or os.cpu_count() or 1

    @property
    def ray_results_dir(self) -> Path:
        return self.data_dir / "ray_results"

    @property
    def log_file(self) -> Path:
        """The server's log lines, beside stderr (rotated; see seedcore.runtime.logs)."""
        return self.data_dir / "logs" / "seedcore.log"

    @property
    def ray_session_file(self) -> Path:
        """Where a server that started local Ray writes that session's address (`seedcore ray status`)."""
        return self.data_dir / "ray" / "session.json"

    def replace(self, **changes) -> "Settings":
        """A copy with `changes` applied and validated; derived defaults are derived again."""
        values = self.model_dump()
        derived = {"tracking_uri", "registry_uri", "database_url"} & set(values)
        for name in derived:  # a default derived from a dir follows that dir unless set on its own
            if name not in self.model_fields_set and name not in changes:
                values.pop(name)
        return _build(type(self), {**values, **changes}, source="argument")

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.mlruns_dir, self.models_dir):
            path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "Settings":
        """Read SEEDCORE_* variables (RAY_ADDRESS too); unset or empty ones keep their defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            raw = env.get(f"{ENV_PREFIX}{name.upper()}")
            if (raw is None or raw == "") and name == "ray_address":
                raw = env.get("RAY_ADDRESS")
            if raw is not None and raw != "":
                values[name] = raw
        return _build(cls, values, source="environment")

    @classmethod
    def variables(cls) -> list[dict]:
        """Every setting as {variable, default, description}: the README's table is generated from it."""
        rows = []
        for name, info in cls.model_fields.items():
            default = info.get_default(call_default_factory=True)
            rows.append({"variable": f"{ENV_PREFIX}{name.upper()}", "default": default,
                         "description": info.description or ""})
        return rows


def _build(cls, values: dict, source: str) -> Settings:
    try:
        return cls(**values)
    except pydantic.ValidationError as exc:
        name = invalid(exc, default="settings").field
        given = values.get(name)
        what = f"{ENV_PREFIX}{name.upper()}={given!r}" if source == "environment" else f"{name}={given!r}"
        raise ValidationError(f"{what}: {exc.errors(include_url=False)[0]['msg']}", field=name) from None


__all__ = ["ENV_PREFIX", "Settings"]
