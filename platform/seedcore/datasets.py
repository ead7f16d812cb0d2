"""Datasets: the built-in default, loading one from the data dir, the split Dataset and its fingerprint; and the
same data judged before a job exists (check_data). The files themselves are read by seedcore.data_files, checked
by seedcore.data_checks and split by seedcore.data_split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from seedcore.data_checks import TableCheck, check_columns, validate_frame
from seedcore.data_files import iter_table_chunks, read_table, resolve_data_path, table_columns, table_format
from seedcore.data_split import split_parts
from seedcore.errors import DataError

BUILTIN_SOURCE = "builtin"
BUILTIN_LABEL = "target"
BUILTIN_FEATURES = [f"f{i}" for i in range(10)]
SCAN_CELLS = 2_000_000  # cells per chunk when the whole file is checked before a job exists


@dataclass(frozen=True)
class Dataset:
    """One dataset split once with a fixed seed. Validation drives tuning; holdout judges the winner."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_holdout: np.ndarray
    y_holdout: np.ndarray
    feature_names: tuple[str, ...]
    label_column: str
    fingerprint: str
    source: str

    @property
    def n_rows(self) -> int:
        return len(self.y_train) + len(self.y_valid) + len(self.y_holdout)

    def describe(self) -> dict:
        return {
            "source": self.source,
            "label_column": self.label_column,
            "feature_names": list(self.feature_names),
            "fingerprint": self.fingerprint,
            "rows": {"train": len(self.y_train), "validation": len(self.y_valid), "holdout": len(self.y_holdout)},
        }


def builtin_frame(n_rows: int = 2000, seed: int = 7) -> pd.DataFrame:
    """Deterministic synthetic binary classification: 10 numeric features f0..f9, label `target`."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, len(BUILTIN_FEATURES)))
    logit = 2.0 * x[:, 0] - 1.5 * x[:, 1] + 1.2 * x[:, 2] * x[:, 3] + 1.0 * np.sin(2 * x[:, 4]) + 0.6 * x[:, 5] ** 2 - 0.6
    y = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame(x.astype(np.float32), columns=BUILTIN_FEATURES)
    frame[BUILTIN_LABEL] = y
    return frame


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """Content hash of the columns and values (order-sensitive), hex sha256."""
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def check_request_data(settings, request) -> list[str]:
    """The data of a tuning or training request, judged before a job or run exists; returns the features."""
    return check_data(settings, request.data_source, request.label_column, request.feature_columns)


def check_data(settings, data_source: str | None, label_column: str | None,
               feature_columns: Sequence[str] | None) -> list[str]:
    """Everything load_dataset would refuse, found in bounded memory before a job or run exists: the file
    is inside the data dir with a supported suffix and not empty, its header has at most
    SEEDCORE_MAX_FEATURES columns, none twice, the label and feature columns are there; then the whole file
    is read in chunks of bounded size through load_dataset's own checks (TableCheck). Returns the features.
    """
    if data_source in (None, "", BUILTIN_SOURCE):
        return check_columns([*BUILTIN_FEATURES, BUILTIN_LABEL], label_column or BUILTIN_LABEL, feature_columns)
    path = resolve_data_path(settings.data_dir, data_source)
    table_format(path)
    if not label_column:
        raise DataError("label_column is required with a data_source", field="label_column")
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty", field="data_source")
    header = table_columns(path, max_columns=settings.max_features)
    features = check_columns(header, label_column, feature_columns)
    check = TableCheck(label_column, features, str(path))
    chunk_rows = max(1, min(settings.batch_chunk_rows, SCAN_CELLS // len(header)))
    for chunk in iter_table_chunks(path, [*features, label_column], chunk_rows):
        check.add(chunk)
    check.finish()
    return features


def load_dataset(data_dir: Path, data_source: str | None = None, label_column: str | None = None,
                 feature_columns: Sequence[str] | None = None, max_columns: int | None = None) -> Dataset:
    """Load, validate and split a dataset. Every problem is a DataError naming the field; with `max_columns`,
    a wider file is refused from its header before it is loaded."""
    if data_source in (None, "", BUILTIN_SOURCE):
        frame, source = builtin_frame(), BUILTIN_SOURCE
        label_column = label_column or BUILTIN_LABEL
    else:
        path = resolve_data_path(data_dir, data_source)
        table_columns(path, max_columns=max_columns)  # a column named twice is refused before pandas renames it
        frame, source = read_table(path), str(path)
        if not label_column:
            raise DataError("label_column is required with a data_source", field="label_column")
    features = check_columns(list(frame.columns), label_column, feature_columns)
    return split_frame(frame, label_column, features, source)


def split_frame(frame: pd.DataFrame, label_column: str, features: list[str], source: str) -> Dataset:
    """Validate features and labels, then split train / validation / holdout with the fixed seed."""
    validate_frame(frame, label_column, features, source)
    x = frame[features].to_numpy(dtype=np.float32)
    y = frame[label_column].to_numpy(dtype=np.float32)
    tr, va, ho = split_parts(y)
    return Dataset(x[tr], y[tr], x[va], y[va], x[ho], y[ho], tuple(features), label_column,
                   fingerprint_frame(frame[features + [label_column]]), source)
