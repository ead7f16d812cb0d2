"""Datasets: the built-in default, CSV/Parquet under the data dir, the fixed split, the fingerprint."""

from __future__ import annotations

import csv
import hashlib
import io
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
MIN_ROWS = 30  # fewer cannot be split three ways with both classes in each part
F32_MAX = float(np.finfo(np.float32).max)  # models see float32: a larger value would become infinite
# The header is read in blocks, never past this many bytes per column allowed (plus a base): a file with
# millions of columns is refused after reading a few MB, not parsed whole.
HEADER_BLOCK_BYTES = 64 * 1024
HEADER_BYTES_PER_COLUMN = 256
PARQUET_FOOTER_MAX_BYTES = 64 * 1024 * 1024  # a Parquet schema is read only from a footer below this
SCAN_CELLS = 2_000_000  # cells per chunk when the whole file is checked before a job exists
# Under this many rows of a class the split may leave a part without it (8 always suffice, measured),
# so the split is tried on the class counts before a job exists.
RARE_CLASS_ROWS = 32


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
    except (ValueError, KeyError, OSError, pd.errors.ParserError) as exc:
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
    """Every feature column numeric (empty cells are missing values), finite and within float32's range;
    the column and row named."""
    for name in columns:
        series = frame[name]
        if not pd.api.types.is_numeric_dtype(series) and series.notna().any():
            at = _first_non_number(series)
            raise DataError(f"column {name!r} holds a non-number ({series.iloc[at]!r}) at row {first_row + at}",
                            field="feature_columns")
        if not pd.api.types.is_float_dtype(series):
            continue  # integers, booleans and all-empty columns hold no infinity and fit float32
        values = series.to_numpy(dtype=np.float64, na_value=np.nan, copy=False)
        outside = np.flatnonzero(np.abs(values) > F32_MAX)  # infinities too; NaN compares False
        if len(outside):  # XGBoost refuses them at predict time and trains nonsense on them
            at = int(outside[0])
            what = "an infinite value" if np.isinf(values[at]) else f"{values[at]:g}, beyond float32's ±{F32_MAX:.4g},"
            raise DataError(f"column {name!r} holds {what} at row {first_row + at}", field="data_source")


def _first_non_number(series: pd.Series) -> int:
    """Position of the first value that is neither missing nor readable as a number."""
    present = series.notna().to_numpy()
    text = present & pd.to_numeric(series, errors="coerce").isna().to_numpy()
    return int(np.flatnonzero(text if text.any() else present)[0])


class TableCheck:
    """The checks on data no useful model can be trained or judged on, over a table given whole or in chunks
    (memory stays near one chunk). `add` each chunk in order, then `finish`; each DataError names the field
    and the column (and the row, where there is one)."""

    def __init__(self, label_column: str, features: Sequence[str], source: str):
        self.label_column, self.features, self.source = label_column, list(features), source
        self.rows = 0
        self.classes = [0, 0]  # rows labelled 0, rows labelled 1
        self.present: set[str] = set()  # features with at least one value
        self.first: dict[str, float] = {}  # each feature's first cell (NaN included)
        self.varies = False  # some feature holds two different cells

    def add(self, chunk: pd.DataFrame) -> None:
        check_feature_values(chunk, self.features, self.rows)
        if len(chunk):
            for name in self.features:
                self._feature(name, chunk[name])
            self._labels(chunk[self.label_column])
        self.rows += len(chunk)

    def _feature(self, name: str, series: pd.Series) -> None:
        if name not in self.present and series.notna().any():
            self.present.add(name)
        if self.varies:
            return
        first = self.first.setdefault(name, series.iloc[0])
        self.varies = series.nunique(dropna=False) > 1 or not _same(first, series.iloc[0])

    def _labels(self, labels: pd.Series) -> None:
        valid = labels.isin([0, 1]).to_numpy() & labels.notna().to_numpy()
        if not valid.all():
            at = int(np.flatnonzero(~valid)[0])
            raise DataError(f"label column {self.label_column!r} must hold only 0/1 (found {labels.iloc[at]!r} at "
                            f"row {self.rows + at})", field="label_column")
        ones = int((labels.to_numpy() == 1).sum())
        self.classes[0] += len(labels) - ones
        self.classes[1] += ones

    def finish(self) -> None:
        if self.rows == 0:  # a header without rows reads as object columns: say "no rows", not "non-numeric"
            raise DataError(f"{Path(self.source).name} has no rows", field="data_source")
        if self.rows < MIN_ROWS:
            raise DataError(f"{Path(self.source).name} has {self.rows} row{'s' * (self.rows > 1)}: too few to split "
                            f"(need at least {MIN_ROWS})", field="data_source")
        empty = [c for c in self.features if c not in self.present]
        if empty:
            raise DataError(f"feature columns with no values at all: {empty}", field="feature_columns")
        if not self.varies:
            raise DataError(f"no feature column varies ({self.features}): nothing to learn from",
                            field="feature_columns")
        if min(self.classes) == 0:
            raise DataError(f"label column {self.label_column!r} has one class only", field="label_column")
        if min(self.classes) < RARE_CLASS_ROWS:  # which part a row lands in depends on the class counts alone
            split_parts(np.repeat(np.array([0, 1], dtype=np.float32), self.classes))


def _same(a, b) -> bool:
    return a == b or (pd.isna(a) and pd.isna(b))


def validate_frame(frame: pd.DataFrame, label_column: str, features: Sequence[str], source: str) -> None:
    """Refuse data no useful model can be trained or judged on; each DataError names the field and column."""
    if frame.empty:
        raise DataError(f"{Path(source).name} has no rows", field="data_source")
    check = TableCheck(label_column, check_columns(list(frame.columns), label_column, features), source)
    check.add(frame)
    check.finish()


def table_columns(path: Path, field: str = "data_source", max_columns: int | None = None) -> list[str]:
    """The header of a CSV or the schema names of a Parquet file, read without the data.

    With `max_columns`, a CSV header is read in bounded bytes and a Parquet footer only when small, so a
    file with millions of columns is refused before it is parsed. A name given twice is refused: pandas
    would rename the second copy (`f0.1`) and train on it as another feature.
    """
    names = _csv_header(path, max_columns, field) if table_format(path, field) == "csv" else _parquet_names(path, field)
    if max_columns is not None and len(names) > max_columns:
        raise DataError(f"{path.name} has {len(names)} columns; at most {max_columns} are taken "
                        "(SEEDCORE_MAX_FEATURES)", field=field)
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise DataError(f"column {name!r} appears twice in {path.name}'s header (columns {seen[name]} and {i})",
                            field=field)
        seen[name] = i
    return names


def _csv_header(path: Path, max_columns: int | None, field: str) -> list[str]:
    """The first line of a CSV (a quoted newline does not end it), as the names pandas gives its columns."""
    limit = None if max_columns is None else HEADER_BLOCK_BYTES + max_columns * HEADER_BYTES_PER_COLUMN
    data, quotes, end = bytearray(), 0, -1
    try:
        with path.open("rb") as handle:
            while end < 0:
                block = handle.read(HEADER_BLOCK_BYTES)
                if not block:
                    break
                end, quotes = _line_end(block, quotes)
                data += block if end < 0 else block[:end]
                if end < 0 and limit is not None and len(data) > limit:
                    raise DataError(f"{path.name}: the header line is longer than {limit} bytes, too long for "
                                    f"{max_columns} columns (SEEDCORE_MAX_FEATURES)", field=field)
        line = bytes(data).decode("utf-8-sig").rstrip("\r")
        raw = next(csv.reader(io.StringIO(line, newline="")), [])
        columns = [str(c) for c in pd.read_csv(io.StringIO(line), nrows=0).columns]
    except (UnicodeDecodeError, csv.Error, ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read the columns of {path.name}: {exc}", field=field) from exc
    if len(raw) != len(columns):
        return columns
    # pandas names a blank column `Unnamed: <i>` and renames a repeat (`f0.1`): repeats show in the raw names
    return [name if name.strip() else column for name, column in zip(raw, columns)]


def _line_end(block: bytes, quotes: int) -> tuple[int, int]:
    """Where in `block` the line ends (a newline outside quotes; -1: not in it), given the quotes seen before
    it; and the quotes seen up to there."""
    start = 0
    at = block.find(b"\n")
    while at >= 0:
        quotes += block.count(b'"', start, at)
        if quotes % 2 == 0:
            return at, quotes
        start, at = at, block.find(b"\n", at + 1)
    return -1, quotes + block.count(b'"', start)


def _parquet_names(path: Path, field: str) -> list[str]:
    """A Parquet file's column names, read from its footer only when the footer is of a sane size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with path.open("rb") as handle:
            handle.seek(max(path.stat().st_size - 8, 0))
            tail = handle.read(8)
        if len(tail) == 8 and tail[4:] == b"PAR1" and int.from_bytes(tail[:4], "little") > PARQUET_FOOTER_MAX_BYTES:
            raise DataError(f"{path.name}: its schema is over {PARQUET_FOOTER_MAX_BYTES} bytes", field=field)
        return list(pq.read_schema(path).names)
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read the columns of {path.name}: {exc}", field=field) from exc


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


def split_parts(y: np.ndarray) -> list[np.ndarray]:
    """Row indices of train / validation / holdout (the fixed seed); a part with one class is a DataError."""
    parts = stratified_split(y, split_fractions(len(y)), SPLIT_SEED)
    for name, idx in zip(("train", "validation", "holdout"), parts):
        if len(np.unique(y[idx])) < 2:
            raise DataError(f"the {name} split has one class only; more rows of each class are needed",
                            field="label_column")
    return parts


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
