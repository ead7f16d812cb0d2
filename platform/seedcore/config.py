"""Settings: every knob, read from SEEDCORE_* environment variables in one place."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path


def _sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Build with `Settings.from_env()`; tests pass their own."""

    data_dir: Path = field(default_factory=lambda: Path("data").resolve())
    mlruns_dir: Path = field(default_factory=lambda: Path("mlruns").resolve())
    tracking_uri: str | None = None  # default: sqlite:///<mlruns>/mlflow.db
    registry_uri: str | None = None  # default: the tracking URI
    database_url: str | None = None  # default: sqlite:///<data>/seedcore.db
    ray_address: str | None = None
    api_token: str | None = None
    model_name: str = "utility_risk_model"
    host: str = "127.0.0.1"
    port: int = 8000
    mlflow_ui_port: int = 5000
    max_trials: int = 200
    max_time_budget_s: float = 4 * 3600
    max_request_bytes: int = 16 * 1024 * 1024
    poll_interval_s: float = 5.0
    min_delta: float = 0.0
    max_concurrent_sweeps: int = 1
    cpus_per_trial: int = 1
    batch_chunk_rows: int = 100_000
    serve_workers: int = 2

    def __post_init__(self):
        object.__setattr__(self, "data_dir", Path(self.data_dir).resolve())
        object.__setattr__(self, "mlruns_dir", Path(self.mlruns_dir).resolve())
        if self.tracking_uri is None:
            object.__setattr__(self, "tracking_uri", _sqlite_uri(self.mlruns_dir / "mlflow.db"))
        if self.registry_uri is None:
            object.__setattr__(self, "registry_uri", self.tracking_uri)
        if self.database_url is None:
            object.__setattr__(self, "database_url", _sqlite_uri(self.data_dir / "seedcore.db"))

    @property
    def artifact_root(self) -> str:
        """Where MLflow artifacts go for experiments we create."""
        return (self.mlruns_dir / "artifacts").as_uri()

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def blessed_dir(self) -> Path:
        from seedcore.names import BLESSED_DIRNAME

        return self.models_dir / BLESSED_DIRNAME

    @property
    def ray_results_dir(self) -> Path:
        return self.data_dir / "ray_results"

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.mlruns_dir, self.models_dir):
            path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "Settings":
        """Read SEEDCORE_* variables (RAY_ADDRESS too); unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        kwargs: dict = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"SEEDCORE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            kwargs[f.name] = _convert(f.type, raw, f.name)
        kwargs.setdefault("ray_address", env.get("RAY_ADDRESS") or None)
        return cls(**kwargs)


def _convert(type_name: str, raw: str, name: str):
    from seedcore.errors import ValidationError

    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "Path":
            return Path(raw)
    except ValueError as exc:
        raise ValidationError(f"SEEDCORE_{name.upper()}={raw!r} is not a {type_name}", field=name) from exc
    return raw
