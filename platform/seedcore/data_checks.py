"""The one data validation (tune, train, evaluate through load_dataset, and batch use it): the label and feature
columns, the feature values, and TableCheck, the checks on a table given whole or in chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from seedcore.data_split import split_parts
from seedcore.errors import DataError

MIN_ROWS = 30  # fewer cannot be split three ways with both classes in each part
F32_MAX = float(np.finfo(np.float32).max)  # models see float32: a larger value would become infinite
# Under this many rows of a class the split may leave a part without it (8 always suffice, measured),
# so the split is tried on the class counts before a job exists.
RARE_CLASS_ROWS = 32


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
