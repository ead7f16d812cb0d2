"""The bench's scratch space: datasets written once, a fresh MLflow store per contender, Ray started once."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from seedcore.config import Settings
from seedcore.data_files import read_table
from seedcore.datasets import BUILTIN_FEATURES, BUILTIN_LABEL, Dataset, builtin_frame, split_frame

LABEL = BUILTIN_LABEL
SMALL_ROWS = 569  # the breast-cancer dataset's size, which the numbers were measured on


class Workspace:
    """Everything a run writes lives under `root`; each contender gets its own store inside it."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.shared = self.root / "shared"
        self.shared.mkdir(exist_ok=True)
        self._template: Path | None = None
        self._count = 0

    # -- MLflow stores ---------------------------------------------------------------------------
    def _store_template(self) -> Path:
        """An initialised MLflow SQLite store; creating one runs migrations (~2 s), so copy it instead."""
        if self._template is None:
            from mlflow import MlflowClient

            path = self.shared / "mlflow-template.db"
            MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
            self._template = path
        return self._template

    def new_dir(self, name: str) -> Path:
        self._count += 1
        path = self.root / f"{self._count:03d}-{name}"
        path.mkdir(parents=True)
        return path

    def fresh_store(self, name: str) -> tuple[Path, str]:
        """A new directory with its own initialised MLflow store: (directory, tracking URI)."""
        directory = self.new_dir(name)
        mlruns = directory / "mlruns"
        mlruns.mkdir()
        shutil.copy(self._store_template(), mlruns / "mlflow.db")
        return directory, f"sqlite:///{mlruns / 'mlflow.db'}"

    def ours(self, name: str, data_files: tuple[Path, ...] = (), **changes) -> Settings:
        """Settings for one run of ours: its own data dir (holding `data_files`) and its own MLflow store."""
        directory, _ = self.fresh_store(name)
        data_dir = directory / "data"
        data_dir.mkdir()
        for path in data_files:
            _link_or_copy(path, data_dir / path.name)
        settings = Settings(data_dir=data_dir, mlruns_dir=directory / "mlruns", **changes)
        settings.ensure_dirs()
        from seedcore.db.migrations import upgrade

        upgrade(settings.database_url)  # promotion takes a lock in our SQL tables
        return settings

    # -- data --------------------------------------------------------------------------------------
    def small_csv(self, n_rows: int = SMALL_ROWS) -> Path:
        """The built-in dataset at `n_rows` rows as a CSV every contender reads."""
        path = self.shared / f"builtin_{n_rows}.csv"
        if not path.exists():
            builtin_frame(n_rows=n_rows).to_csv(path, index=False)
        return path

    def wide_parquet(self, n_rows: int, n_features: int, seed: int = 11) -> Path:
        """Synthetic binary classification, `n_features` float32 columns, label `target`, as Parquet."""
        path = self.shared / f"wide_{n_rows}x{n_features}.parquet"
        if not path.exists():
            synthetic_frame(n_rows, n_features, seed).to_parquet(path, index=False)
        return path

    def features_parquet(self, n_rows: int, seed: int = 5) -> Path:
        """`n_rows` rows of the built-in features f0..f9 only (what batch prediction reads)."""
        path = self.shared / f"features_{n_rows}.parquet"
        if not path.exists():
            rng = np.random.default_rng(seed)
            frame = pd.DataFrame(rng.normal(size=(n_rows, len(BUILTIN_FEATURES))).astype(np.float32),
                                 columns=BUILTIN_FEATURES)
            frame.to_parquet(path, index=False)
        return path


def synthetic_frame(n_rows: int, n_features: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    k = min(n_features, 8)
    weights = rng.normal(size=k)
    logit = x[:, :k] @ weights + 0.8 * x[:, 0] * x[:, 1 % n_features] + 0.5 * np.sin(2 * x[:, 2 % n_features])
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(n_features)])
    frame[LABEL] = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return frame


def load_split(path: Path) -> Dataset:
    """What the peers do: read the same file and split it with the platform's own fixed-seed split."""
    frame = read_table(path)
    features = [c for c in frame.columns if c != LABEL]
    return split_frame(frame, LABEL, features, str(path))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy(source, target)


# -- Ray ---------------------------------------------------------------------------------------------
def start_ray() -> float:
    """Start Ray the way the platform does (before any timer); returns the seconds it took."""
    from seedcore.tuning.cluster import ensure_ray

    started = time.perf_counter()
    ensure_ray(Settings())
    return time.perf_counter() - started


@contextmanager
def plain_tune_env():
    """Ray Tune with its own defaults: undo the TUNE_* tweaks `ensure_ray` put into this process's env.

    Tune's default SIGINT handler stays installed after `fit()`; put ours back so Ctrl-C still works.
    """
    from seedcore.tuning.cluster import TUNE_ENV

    saved = {key: os.environ.pop(key) for key in TUNE_ENV if key in os.environ}
    main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        yield
    finally:
        os.environ.update(saved)
        if main_thread:
            signal.signal(signal.SIGINT, handler)


@contextmanager
def mlflow_state():
    """Leave MLflow's process-wide tracking URI and active runs as they were."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    try:
        yield
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(uri)


def count_metric_points(tracking_uri: str) -> int:
    """How many metric values the store holds (read straight from its SQLite file, after the timer)."""
    import sqlite3

    path = tracking_uri.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return int(conn.execute("select count(*) from metrics").fetchone()[0])


def count_runs(tracking_uri: str) -> int:
    import sqlite3

    path = tracking_uri.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return int(conn.execute("select count(*) from runs").fetchone()[0])
