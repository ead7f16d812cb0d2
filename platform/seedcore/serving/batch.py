"""Batch prediction: stream a CSV or Parquet table from the data dir through the served model into a
new Parquet file, one chunk at a time, so memory stays near one chunk whatever the file size."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from seedcore._xgboost import xgb
from seedcore.config import Settings
from seedcore.data_checks import check_feature_values
from seedcore.data_files import iter_table_chunks, resolve_data_path, table_columns, table_format
from seedcore.errors import DataError, ValidationError
from seedcore.serving.model import ServedModel

PREDICTIONS_DIRNAME = "predictions"
ROW_COLUMN, PREDICTION_COLUMN = "row", "prediction"
OUTPUT_SCHEMA = pa.schema([(ROW_COLUMN, pa.int64()), (PREDICTION_COLUMN, pa.float32())])


@dataclass(frozen=True)
class BatchResult:
    """Where the predictions went and what produced them."""

    output_path: Path
    output_source: str  # relative to the data dir: usable as a data_source again
    rows: int
    chunks: int
    feature_columns: list[str]
    model_version: int


def predict_table(model: ServedModel, settings: Settings, data_source: str,
                  feature_columns: Sequence[str] | None = None) -> BatchResult:
    """Predict every row of `data_source` (inside the data dir) with `model`; write a new Parquet file.

    Column `row` is the 0-based row number in the input, `prediction` the model's probability.
    """
    path = resolve_data_path(settings.data_dir, data_source, field="data_source")
    table_format(path)
    columns = match_feature_columns(model, table_columns(path, max_columns=settings.max_features), feature_columns)
    out = new_output_path(settings, path, model.version)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        rows, chunks = _stream(model, path, columns, tmp, settings.batch_chunk_rows)
        if rows == 0:
            raise DataError(f"{path.name} has no rows", field="data_source")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return BatchResult(out, str(out.relative_to(settings.data_dir)), rows, chunks, columns, model.version)


def match_feature_columns(model: ServedModel, header: Sequence[str], requested: Sequence[str] | None) -> list[str]:
    """The file's columns feeding the model's features, in the model's feature order.

    Default: the model's own feature names. Given names are taken position by position (the i-th
    column feeds the i-th feature) unless they are exactly the model's names in another order.
    """
    expected = list(model.feature_names)
    columns = expected if requested is None else list(requested)
    where = "feature_columns"
    if len(columns) != len(expected):
        raise ValidationError(f"expected {len(expected)} columns, one per model feature {expected} in that "
                              f"order; got {len(columns)}", field=where)
    if len(set(columns)) != len(columns):
        raise ValidationError(f"columns are repeated: {columns}", field=where)
    missing = [c for c in columns if c not in set(header)]
    if missing:
        hint = "" if requested is not None else "; name the columns to use with feature_columns"
        raise ValidationError(f"columns {missing} are not in the file (it has {list(header)}){hint}", field=where)
    if set(columns) == set(expected):
        return expected
    return columns


def new_output_path(settings: Settings, source: Path, version: int) -> Path:
    """`<data>/predictions/<stem>-v<version>-<UTC time>-<8 hex>.parquet`, never an existing file."""
    directory = settings.data_dir / PREDICTIONS_DIRNAME
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    while True:
        candidate = directory / f"{source.stem}-v{version}-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        if not candidate.exists():
            return candidate


def _stream(model: ServedModel, path: Path, columns: list[str], out: Path, chunk_rows: int) -> tuple[int, int]:
    rows = chunks = 0
    predict = model.bulk_predictor()
    with pq.ParquetWriter(out, OUTPUT_SCHEMA) as writer:
        for chunk in iter_table_chunks(path, columns, chunk_rows):
            if chunk.empty:
                continue
            x = chunk_matrix(chunk, columns, first_row=rows)
            try:
                prob = predict(x)
            except xgb.core.XGBoostError as exc:
                raise DataError(f"rows {rows}..{rows + len(x) - 1}: {exc}", field="data_source") from exc
            index = np.arange(rows, rows + len(x), dtype=np.int64)
            writer.write_table(pa.table([index, np.asarray(prob, dtype=np.float32)], schema=OUTPUT_SCHEMA))
            rows += len(x)
            chunks += 1
    return rows, chunks


def chunk_matrix(chunk: pd.DataFrame, columns: list[str], first_row: int) -> np.ndarray:
    """The chunk's feature columns as float32 (empty cells are NaN = missing); text or infinity is a 400."""
    check_feature_values(chunk, columns, first_row)
    x = np.empty((len(chunk), len(columns)), dtype=np.float32)
    for j, name in enumerate(columns):  # column by column: no copy of the whole chunk
        x[:, j] = chunk[name].to_numpy(dtype=np.float32, na_value=np.nan)
    return x
