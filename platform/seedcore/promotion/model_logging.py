"""A trained model logged into its MLflow run on its way into the registry: the model once (signature, input
example, pinned requirements), its holdout scores and tags. Registry.register then makes it a version.

The model's bytes are made once per booster (`model_bytes`): the version's model file and, when it is promoted,
the blessed file are the same bytes; a booster read from a trial's checkpoint keeps the bytes it was read from.
"""

from __future__ import annotations

import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.models import infer_signature

from seedcore import names
from seedcore._xgboost import xgb
from seedcore.datasets import Dataset
from seedcore.scoring import evaluate

# A logged model's requirements, pinned to what runs here (distribution name: its module). MLflow's own
# inference spawns a subprocess and costs seconds.
_PINNED = {"mlflow": mlflow, "xgboost": xgb, "pandas": pd, "numpy": np}
_PIP_REQUIREMENTS = [f"{name}=={module.__version__}" for name, module in _PINNED.items()]

_SCORED: "weakref.WeakKeyDictionary[xgb.Booster, tuple[Dataset, dict]]" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()
_BYTES: "weakref.WeakKeyDictionary[xgb.Booster, bytes]" = weakref.WeakKeyDictionary()
MODEL_FORMAT = "ubj"  # of the version's model file and of the blessed file


@dataclass
class Candidate:
    """A trained model on its way into the registry. `tags` go on its version and its source run too;
    `experiment_id` (its run's, when the caller knows it) saves a lookup."""

    booster: xgb.Booster
    params: dict
    dataset: Dataset
    validation: dict
    run_id: str
    experiment_name: str
    trial_id: str = ""
    holdout: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    experiment_id: str | None = None


def holdout_scores(booster: xgb.Booster, dataset: Dataset) -> dict:
    """`booster`'s AUC and logloss on `dataset`'s holdout, scored once per booster and dataset: registering a
    version and the champion gate deciding on it both ask."""
    with _CACHE_LOCK:
        seen = _SCORED.get(booster)
    if seen is not None and seen[0] is dataset:
        return dict(seen[1])
    scores = evaluate(booster, dataset.x_holdout, dataset.y_holdout)
    with _CACHE_LOCK:
        _SCORED[booster] = (dataset, scores)
    return dict(scores)


def model_bytes(booster: xgb.Booster) -> bytes:
    """The booster's model (UBJ), serialised once per booster: logging it into the registry and blessing it both
    ask. A booster is not changed once it is on its way into the registry: these are its bytes as registered."""
    with _CACHE_LOCK:
        raw = _BYTES.get(booster)
    if raw is None:
        raw = bytes(booster.save_raw(MODEL_FORMAT))
        with _CACHE_LOCK:
            raw = _BYTES.setdefault(booster, raw)
    return raw


def booster_from(raw: bytes) -> xgb.Booster:
    """A booster read from a model's UBJ bytes (a trial's checkpoint), keeping them: registered and blessed as is."""
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    with _CACHE_LOCK:
        _BYTES[booster] = bytes(raw)
    return booster


@contextmanager
def _writing_bytes(booster: xgb.Booster) -> Iterator[None]:
    """MLflow's xgboost flavor writes the model file with `booster.save_model(path)`: meanwhile that call writes
    the booster's `model_bytes` (made here, or earlier) instead of serialising it again."""
    raw = model_bytes(booster)
    booster.save_model = lambda path, **_: Path(path).write_bytes(raw)  # this booster only, for this call
    try:
        yield
    finally:
        del booster.save_model


def log_candidate(client: MlflowClient, candidate: Candidate):
    """Log the booster once into the candidate's run, with its holdout scores (scored here if not given) and
    its tags; MLflow's ModelInfo of the logged model."""
    ds = candidate.dataset
    if not candidate.holdout:
        candidate.holdout = holdout_scores(candidate.booster, ds)
    # Declared as double, what `pd.read_csv` gives users; XGBoost turns it into float32 itself.
    example = pd.DataFrame(ds.x_holdout[:5].astype(np.float64), columns=list(ds.feature_names))
    signature = infer_signature(example, candidate.booster.inplace_predict(ds.x_holdout[:5]))
    # MLflow refuses to resume a run outside the process's active experiment (any code may have set it).
    mlflow.set_experiment(experiment_id=candidate.experiment_id or client.get_run(candidate.run_id).info.experiment_id)
    _map_pinned_packages()
    with mlflow.start_run(run_id=candidate.run_id), _writing_bytes(candidate.booster):
        info = mlflow.xgboost.log_model(candidate.booster, name=names.MLFLOW_MODEL_ARTIFACT, signature=signature,
                                        input_example=example, model_format=MODEL_FORMAT,
                                        pip_requirements=_PIP_REQUIREMENTS)
    ts = int(time.time() * 1000)
    client.log_batch(candidate.run_id, metrics=[Metric(f"holdout_{k}", v, ts, 0) for k, v in candidate.holdout.items()],
                     tags=[RunTag(k, str(v)) for k, v in candidate.tags.items()])
    return info


def _map_pinned_packages() -> None:
    """Give MLflow the module-to-package map of our pinned requirements.

    log_model checks each pinned requirement against the installed version, and before that maps every
    module of every installed distribution to its package (2-3 s of CPU in this environment, taken from
    the trials). Our requirements are named by distribution and each is its own module, so their entries
    are the whole map that check needs. Models are logged only with _PIP_REQUIREMENTS in our processes.
    """
    from mlflow.utils import requirements_utils

    if requirements_utils._MODULES_TO_PACKAGES is None:
        requirements_utils._MODULES_TO_PACKAGES = {module.__name__: [name] for name, module in _PINNED.items()}
