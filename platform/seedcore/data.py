"""Datasets: the built-in default, CSV/Parquet under the data dir, the fixed split, the fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from seedcore.errors import DataError

BUILTIN_SOURCE = "builtin"
BUILTIN_LABEL = "target"
BUILTIN_FEATURES = [f"f{i}" for i in range(10)]
SPLIT_SEED = 20240804
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / validation / holdout
# Under SMALL_DATA_ROWS rows a fifth is too few validation rows to rank trials (ASHA and the winner
# choice become lotteries): small data gives validation 30%. The refit folds it back into training.
SMALL_DATA_ROWS = 10_000
SMALL_SPLIT_FRACTIONS = (0.5, 0.3, 0.2)
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


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


def resolve_data_path(data_dir: Path, source: str, field: str = "data_source", must_exist: bool = True) -> Path:
    """Resolve `source` inside `data_dir`; refuse URLs, `..` escapes, absolute paths and symlinks elsewhere."""
    if not isinstance(source, str) or not source.strip():
        raise DataError("must be a non-empty path inside the data dir", field=field)
    if any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in source):  # the OS would refuse it mid-request
        raise DataError("must not contain control characters or lone surrogates", field=field)
    if urlparse(source).scheme not in ("", "file") or "://" in source:
        raise DataError(f"URLs are not accepted ({source!r}); give a path inside the data dir", field=field)
    root = Path(data_dir).resolve()
    candidate = Path(source)
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise DataError(f"{source!r} is outside the data dir {root}", field=field)
    if must_exist and not resolved.is_file():
        raise DataError(f"{source!r} does not exist in the data dir {root}", field=field)
    return resolved


def table_format(path: Path, field: str = "data_source") -> str:
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path.name}: only .csv and .parquet files are supported", field=field)
    return kind


def read_table(path: Path, columns: Sequence[str] | None = None, field: str = "data_source") -> pd.DataFrame:
    """Read a whole CSV or Parquet file; an empty or unreadable file is a DataError."""
    kind = table_format(path, field)
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty", field=field)
    try:
        if kind == "csv":
            return pd.read_csv(path, usecols=list(columns) if columns else None)
        return pd.read_parquet(path, columns=list(columns) if columns else None)
    except (ValueError, KeyError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {path.name}: {exc}", field=field) from exc


def iter_table_chunks(path: Path, columns: Sequence[str] | None, chunk_rows: int,
                      field: str = "data_source") -> Iterator[pd.DataFrame]:
    """Stream a CSV or Parquet file in chunks of at most `chunk_rows` rows (bounded memory)."""
    kind = table_format(path, field)
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty", field=field)
    cols = list(columns) if columns else None
    try:
        if kind == "csv":
            yield from pd.read_csv(path, usecols=cols, chunksize=chunk_rows)
            return
        import pyarrow.parquet as pq

        # pre_buffer (pyarrow's default) reads row groups ahead, so memory would grow with the file;
        # without it, memory stays near one row group plus one batch.
        parquet = pq.ParquetFile(path, pre_buffer=False)
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=cols):
            yield batch.to_pandas()
    except (ValueError, KeyError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {path.name}: {exc}", field=field) from exc


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """Content hash of the columns and values (order-sensitive), hex sha256."""
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


# -- the one data validation: tune, train, evaluate (through load_dataset) and batch use these ------------
def check_columns(columns: Sequence[str], label_column: str, feature_columns: Sequence[str] | None) -> list[str]:
    """The feature columns to use (the given ones, or every column but the label), checked against `columns`."""
    if label_column not in columns:
        raise DataError(f"label column {label_column!r} not in {list(columns)}", field="label_column")
    features = [c for c in columns if c != label_column] if feature_columns is None else list(feature_columns)
    repeated = sorted({c for c in features if features.count(c) > 1})
    if repeated:  # one input under two names: the model's features would not match the data's
        raise DataError(f"feature columns are repeated: {repeated}", field="feature_columns")
    missing = [c for c in features if c not in columns]
    if missing:
        raise DataError(f"feature columns not in the data: {missing}", field="feature_columns")
    if not features or label_column in features:
        raise DataError("feature columns must be non-empty and exclude the label", field="feature_columns")
    return features


def check_feature_values(frame: pd.DataFrame, columns: Sequence[str], first_row: int = 0) -> None:
    """Every feature column numeric (empty cells are missing values) and finite; the column and row named."""
    for name in columns:
        series = frame[name]
        if not pd.api.types.is_numeric_dtype(series) and series.notna().any():
            at = _first_non_number(series)
            raise DataError(f"column {name!r} holds a non-number ({series.iloc[at]!r}) at row {first_row + at}",
                            field="feature_columns")
        if not pd.api.types.is_float_dtype(series):
            continue  # integers, booleans and all-empty columns hold no infinity
        infinite = np.flatnonzero(np.isinf(series.to_numpy(dtype=np.float64, na_value=np.nan, copy=False)))
        if len(infinite):  # XGBoost refuses them at predict time and trains nonsense on them
            raise DataError(f"column {name!r} holds an infinite value at row {first_row + int(infinite[0])}",
                            field="data_source")


def _first_non_number(series: pd.Series) -> int:
    """Position of the first value that is neither missing nor readable as a number."""
    present = series.notna().to_numpy()
    text = present & pd.to_numeric(series, errors="coerce").isna().to_numpy()
    return int(np.flatnonzero(text if text.any() else present)[0])


def validate_frame(frame: pd.DataFrame, label_column: str, features: Sequence[str], source: str) -> None:
    """Refuse data no useful model can be trained or judged on; each DataError names the field and column."""
    if frame.empty:  # a header without rows reads as object columns: say "no rows", not "non-numeric"
        raise DataError(f"{Path(source).name} has no rows", field="data_source")
    features = check_columns(list(frame.columns), label_column, features)
    check_feature_values(frame, features)
    empty = [c for c in features if frame[c].isna().all()]
    if empty:
        raise DataError(f"feature columns with no values at all: {empty}", field="feature_columns")
    if not any(frame[c].nunique(dropna=False) > 1 for c in features):
        raise DataError(f"no feature column varies ({features}): nothing to learn from", field="feature_columns")
    labels = frame[label_column]
    if labels.isna().any() or not set(pd.unique(labels)).issubset({0, 1, True, False}):
        raise DataError(f"label column {label_column!r} must hold only 0/1", field="label_column")
    if labels.nunique() < 2:
        raise DataError(f"label column {label_column!r} has one class only", field="label_column")


def table_columns(path: Path, field: str = "data_source") -> list[str]:
    """The header of a CSV or the schema names of a Parquet file, read without the data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if table_format(path, field) == "csv":
            return [str(c) for c in pd.read_csv(path, nrows=0).columns]
        return list(pq.read_schema(path).names)
    except (ValueError, OSError, pa.ArrowException, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read the columns of {path.name}: {exc}", field=field) from exc


def check_request_data(settings, request) -> list[str]:
    """What can be known of a request's data from the file's header alone, before a job or run exists: the
    file is inside the data dir with a supported suffix and not empty, and the label and feature columns are
    there. `request` is a tuning or training request; returns the feature names.
    """
    data_source, label_column = request.data_source, request.label_column
    feature_columns = request.feature_columns
    if data_source in (None, "", BUILTIN_SOURCE):
        return check_columns([*BUILTIN_FEATURES, BUILTIN_LABEL], label_column or BUILTIN_LABEL, feature_columns)
    path = resolve_data_path(settings.data_dir, data_source)
    table_format(path)
    if not label_column:
        raise DataError("label_column is required with a data_source", field="label_column")
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty", field="data_source")
    return check_columns(table_columns(path), label_column, feature_columns)


def load_dataset(data_dir: Path, data_source: str | None = None, label_column: str | None = None,
                 feature_columns: Sequence[str] | None = None) -> Dataset:
    """Load, validate and split a dataset. Every problem is a DataError naming the field."""
    if data_source in (None, "", BUILTIN_SOURCE):
        frame, source = builtin_frame(), BUILTIN_SOURCE
        label_column = label_column or BUILTIN_LABEL
    else:
        path = resolve_data_path(data_dir, data_source)
        frame, source = read_table(path), str(path)
        if not label_column:
            raise DataError("label_column is required with a data_source", field="label_column")
    features = check_columns(list(frame.columns), label_column, feature_columns)
    return split_frame(frame, label_column, features, source)


def split_frame(frame: pd.DataFrame, label_column: str, features: list[str], source: str) -> Dataset:
    """Validate features and labels, then split train / validation / holdout with the fixed seed."""
    validate_frame(frame, label_column, features, source)
    if len(frame) < 30:
        raise DataError(f"{len(frame)} rows is too few to split (need at least 30)", field="data_source")
    x = frame[features].to_numpy(dtype=np.float32)
    y = frame[label_column].to_numpy(dtype=np.float32)
    parts = stratified_split(y, split_fractions(len(frame)), SPLIT_SEED)
    for name, idx in zip(("train", "validation", "holdout"), parts):
        if len(np.unique(y[idx])) < 2:
            raise DataError(f"the {name} split has one class only; more rows of each class are needed",
                            field="label_column")
    tr, va, ho = parts
    return Dataset(x[tr], y[tr], x[va], y[va], x[ho], y[ho], tuple(features), label_column,
                   fingerprint_frame(frame[features + [label_column]]), source)


def split_fractions(n_rows: int) -> tuple[float, float, float]:
    """Train / validation / holdout fractions for a table of `n_rows` rows."""
    return SMALL_SPLIT_FRACTIONS if n_rows < SMALL_DATA_ROWS else SPLIT_FRACTIONS


def stratified_split(y: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Row indices of train / validation / holdout, each holding the classes in the table's proportions.

    Rows are shuffled within their class, then ordered by their relative rank in it, so every prefix
    of the order (hence every part) takes each class at the same rate; the part sizes are exact.
    """
    rng = np.random.default_rng(seed)
    key = np.empty(len(y))
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        key[rows] = (rng.permutation(len(rows)) + rng.random(len(rows))) / len(rows)
    order = np.argsort(key, kind="stable")
    n_train, n_valid = int(len(y) * fractions[0]), int(len(y) * fractions[1])
    return [np.sort(part) for part in np.split(order, [n_train, n_train + n_valid])]
