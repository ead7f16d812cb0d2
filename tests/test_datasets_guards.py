"""Data no model can learn from is a 400 naming the field and the column before any job, run or file exists:
columns named twice, values beyond float32, one class, text labels, too few rows, infinite columns, a rare
class the split cannot place, and files far wider than SEEDCORE_MAX_FEATURES, refused from their header's
first bytes in bounded time and memory. Tune, submit and train read the whole file; evaluate and
batch_predict apply the same checks to what they read."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from _serving import add_version
from _tuning import all_runs, assert_nothing_happened, job_rows
from seedcore.api import create_app
from seedcore.serving.batch import PREDICTIONS_DIRNAME
from seedcore.data_files import table_columns
from seedcore.datasets import BUILTIN_FEATURES, check_data, load_dataset
from seedcore.db.database import Database
from seedcore.errors import DataError
from seedcore.monitoring.evaluate import latest_evaluation
from seedcore.promotion.registry import Registry
from seedcore.services import services_of

pytestmark = [pytest.mark.unit, pytest.mark.requests_only]  # the app runs no background thread

TUNE = {"space_type": "conservative", "config_type": "conservative", "custom_tune_config": {"num_samples": 1}}
TRAIN = {"params": {"max_depth": 2, "num_boost_round": 3}}
WIDE_COLUMNS = 10_000_000  # the outside tester's file: ten million columns, over 100 MB of header


def frame(rows: int = 120, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    data["y"] = (data["a"] + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    return data


def write(settings, name: str, data: pd.DataFrame) -> str:
    path = settings.data_dir / name
    data.to_parquet(path, index=False) if name.endswith(".parquet") else data.to_csv(path, index=False)
    return name


def _duplicate_csv(settings, name):
    data = frame()
    text = data.to_csv(index=False).replace("a,b,c,y", "a,b,a,y", 1)  # the third column is called `a` again
    (settings.data_dir / name).write_text(text)
    return name


def _duplicate_parquet(settings, name):
    data = frame()
    table = pa.Table.from_arrays([pa.array(data[c]) for c in data.columns], names=["a", "b", "a", "y"])
    pq.write_table(table, settings.data_dir / name)
    return name


def _spoil(change):
    def make(settings, name):
        data = frame()
        change(data)
        return write(settings, name, data)
    return make


def _beyond_float32(f):
    f.loc[41, "b"] = 1e39  # finite in float64; infinite once the model's float32 sees it


def _one_class(f):
    f["y"] = 1


def _text_labels(f):
    f["y"] = np.where(f["y"] == 1, "yes", "no")


def _infinite_column(f):
    f["c"] = np.inf


def _rare_class(f):
    f["y"] = 0
    f.loc[[5, 60], "y"] = 1  # two positives: the split leaves a part without one


def _rows(n):
    def make(settings, name):
        return write(settings, name, frame().head(n))
    return make


# (make the file, name suffix, expected field, what the message must name)
BAD_FILES = {
    "duplicate-column-csv": (_duplicate_csv, "csv", "data_source", "'a' appears twice"),
    "duplicate-column-parquet": (_duplicate_parquet, "parquet", "data_source", "'a' appears twice"),
    "beyond-float32-csv": (_spoil(_beyond_float32), "csv", "data_source", "'b' holds 1e+39, beyond float32"),
    "beyond-float32-parquet": (_spoil(_beyond_float32), "parquet", "data_source", "'b' holds 1e+39"),
    "one-class": (_spoil(_one_class), "csv", "label_column", "'y' has one class only"),
    "text-labels": (_spoil(_text_labels), "csv", "label_column", "'y' must hold only 0/1 (found '"),
    "text-labels-parquet": (_spoil(_text_labels), "parquet", "label_column", "'y' must hold only 0/1"),
    "one-row": (_rows(1), "csv", "data_source", "has 1 row"),
    "three-rows": (_rows(3), "csv", "data_source", "has 3 rows"),
    "all-infinite-column": (_spoil(_infinite_column), "csv", "data_source", "'c' holds an infinite value"),
    "rare-class": (_spoil(_rare_class), "csv", "label_column", "split has one class only"),
}


@pytest.mark.parametrize("make,suffix,field,named", BAD_FILES.values(), ids=list(BAD_FILES))
def test_submit_refuses_bad_data_before_any_job_exists(client, migrated_settings, make, suffix, field, named):
    source = make(migrated_settings, f"bad.{suffix}")
    response = client.post("/xgboost/tune/submit", json={**TUNE, "data_source": source, "label_column": "y"})
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["field"] == field and named in body["error"], body
    assert_nothing_happened(migrated_settings)
    # the job itself would have refused the same file with the same words
    with pytest.raises(DataError) as loaded:
        load_dataset(migrated_settings.data_dir, source, "y")
    assert loaded.value.field == field and named in loaded.value.message


@pytest.mark.parametrize("name", ["duplicate-column-csv", "beyond-float32-csv", "text-labels", "three-rows",
                                  "rare-class"])
def test_train_refuses_bad_data_before_any_job_exists(client, migrated_settings, name):
    make, suffix, field, named = BAD_FILES[name]
    source = make(migrated_settings, f"bad.{suffix}")
    response = client.post("/xgboost/train", json={**TRAIN, "data_source": source, "label_column": "y"})
    assert response.status_code == 400 and response.get_json()["field"] == field, response.get_json()
    assert named in response.get_json()["error"]
    assert_nothing_happened(migrated_settings)


@contextmanager
def _app(settings):
    app = create_app(settings)
    app.config["TESTING"] = True
    try:
        yield app.test_client()
    finally:
        services_of(app).stop()


def test_the_whole_file_is_read_not_its_first_chunk(migrated_settings):
    """A bad value far past the first chunk is found, with its row in the file."""
    settings = migrated_settings.replace(batch_chunk_rows=50)
    data = frame(400)
    data.loc[333, "c"] = -2e39
    source = write(settings, "late.csv", data)
    with _app(settings) as client:
        response = client.post("/xgboost/tune/submit", json={**TUNE, "data_source": source, "label_column": "y"})
    assert response.status_code == 400 and "'c' holds -2e+39" in response.get_json()["error"], response.get_json()
    assert "at row 333" in response.get_json()["error"]
    assert job_rows(settings) == []


def test_only_the_columns_used_are_judged(settings):
    """A column the request leaves out may hold anything (what /tune/submit checks; its 202 is tested in
    test_inputs_data)."""
    data = frame()
    data["notes"] = "free text"
    data.loc[3, "b"] = 1e39
    source = write(settings, "partly.csv", data)
    assert check_data(settings, source, "y", ["a", "c"]) == ["a", "c"]
    with pytest.raises(DataError, match="'b' holds 1e"):
        check_data(settings, source, "y", ["a", "b"])


def test_a_monitor_with_bad_data_in_its_sweep_is_refused(client, migrated_settings):
    source = _spoil(_beyond_float32)(migrated_settings, "bad.csv")
    monitor = {"name": "m", "metric": "live_auc", "threshold": 0.9,
               "tune": {**TUNE, "data_source": source, "label_column": "y"}}
    response = client.post("/xgboost/monitors", json=monitor)
    assert response.status_code == 400 and response.get_json()["field"] == "tune.data_source", response.get_json()
    assert client.get("/xgboost/monitors").get_json()["total"] == 0


# -- a file far wider than the cap: refused from the header's first bytes ----------------------------------
@pytest.fixture(scope="module")
def wide_file(tmp_path_factory):
    """A CSV of ten million named columns and one row (over 100 MB), written once."""
    path = tmp_path_factory.mktemp("wide") / "wide.csv"
    with path.open("wb") as handle:
        step = 1_000_000
        for start in range(0, WIDE_COLUMNS, step):
            handle.write(",".join(f"f{i}" for i in range(start, start + step)).encode() + b",")
        handle.write(b"y\n" + b"0," * WIDE_COLUMNS + b"1\n")
    assert path.stat().st_size > 100_000_000
    yield path
    path.unlink()


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_rss_growth(into: list):
    """The process's largest resident size while the block runs, less what it was before (sampled)."""
    before, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        done.set()
        sampler.join()
        into.append(max(peak[0], _rss()) - before)


@pytest.fixture
def served(migrated_settings):
    """An app serving a promoted version on the built-in features f0..f9."""
    version, _ = add_version(migrated_settings, Registry(migrated_settings), rounds=5)
    with _app(migrated_settings) as client:
        assert client.post("/xgboost/refresh_model").status_code == 200
        yield migrated_settings, client, version


WIDE_CALLS = [
    ("/xgboost/tune/submit", {**TUNE, "label_column": "y"}),
    ("/xgboost/train", {**TRAIN, "label_column": "y"}),
    ("/xgboost/evaluate", {"label_column": "y"}),
    ("/xgboost/batch_predict", {}),
]


def test_a_ten_million_column_file_is_refused_in_bounded_time_and_memory(served, wide_file):
    settings, client, _ = served
    os.link(wide_file, settings.data_dir / "wide.csv")  # the same file inside the data dir, no copy
    for path, body in WIDE_CALLS:
        growth: list = []
        started = time.monotonic()
        with peak_rss_growth(growth):
            response = client.post(path, json={**body, "data_source": "wide.csv"})
        elapsed = time.monotonic() - started
        answer = response.get_json()
        assert response.status_code == 400 and answer["field"] == "data_source", (path, answer)
        assert "SEEDCORE_MAX_FEATURES" in answer["error"], answer
        assert elapsed < 3.0, (path, elapsed)
        assert growth[0] < 64 * 2**20, (path, growth[0] / 2**20)  # the header read stops at ~2.6 MB
    assert job_rows(settings) == []
    assert not list((settings.data_dir / PREDICTIONS_DIRNAME).glob("*"))


def test_the_column_cap_counts_the_header(migrated_settings):
    settings = migrated_settings.replace(max_features=4)
    for suffix in ("csv", "parquet"):
        data = frame()
        data["d"] = data["a"] * 2
        source = write(settings, f"five.{suffix}", data)
        with pytest.raises(DataError) as err:
            check_data(settings, source, "y", None)
        assert err.value.field == "data_source" and "has 5 columns; at most 4" in err.value.message
        assert check_data(settings.replace(max_features=5), source, "y", None) == ["a", "b", "c", "d"]


def test_a_quoted_header_reads_as_pandas_reads_it(settings):
    (settings.data_dir / "quoted.csv").write_text('"a,1","b\nsecond line",,y\n1,2,3,0\n')
    assert table_columns(settings.data_dir / "quoted.csv", max_columns=10) == ["a,1", "b\nsecond line",
                                                                                "Unnamed: 2", "y"]


# -- evaluate and batch_predict: the same checks on what they read -----------------------------------------
def _model_file(settings, name: str, change=None) -> str:
    data = load_dataset(settings.data_dir)
    table = pd.DataFrame(data.x_holdout.astype(np.float64), columns=BUILTIN_FEATURES)
    table["y"] = data.y_holdout.astype(int)
    if change:
        change(table)
    return write(settings, name, table)


def _f3_beyond_float32(table):
    table.loc[7, "f3"] = 1e39


def test_evaluate_refuses_values_beyond_float32_and_stores_nothing(served):
    settings, client, version = served
    for suffix in ("csv", "parquet"):
        source = _model_file(settings, f"holdout.{suffix}", _f3_beyond_float32)
        response = client.post("/xgboost/evaluate", json={"data_source": source, "label_column": "y"})
        answer = response.get_json()
        assert response.status_code == 400 and answer["field"] == "data_source", answer
        assert "'f3' holds 1e+39" in answer["error"] and "row 7" in answer["error"]
    duplicate = _model_file(settings, "twice.csv")
    text = (settings.data_dir / duplicate).read_text().replace("f8,f9", "f8,f8", 1)
    (settings.data_dir / duplicate).write_text(text)
    response = client.post("/xgboost/evaluate", json={"data_source": duplicate, "label_column": "y"})
    assert response.status_code == 400 and "'f8' appears twice" in response.get_json()["error"]
    db = Database(settings.database_url)
    assert latest_evaluation(db, settings.model_name, version) is None
    db.dispose()
    evaluation_runs = [r for r in all_runs(settings) if r.data.tags.get("seedcore.kind") == "evaluation"]
    assert evaluation_runs == []
    good = _model_file(settings, "good.csv")  # the same file without the bad cell is scored
    assert client.post("/xgboost/evaluate", json={"data_source": good, "label_column": "y"}).status_code == 200


def test_batch_predict_refuses_values_beyond_float32_and_writes_nothing(served):
    settings, client, _ = served
    for suffix in ("csv", "parquet"):
        source = _model_file(settings, f"rows.{suffix}", _f3_beyond_float32)
        response = client.post("/xgboost/batch_predict", json={"data_source": source})
        answer = response.get_json()
        assert response.status_code == 400 and answer["field"] == "data_source", answer
        assert "'f3' holds 1e+39" in answer["error"] and "row 7" in answer["error"]
    assert not list((settings.data_dir / PREDICTIONS_DIRNAME).glob("*"))
    good = _model_file(settings, "rows_ok.csv")
    assert client.post("/xgboost/batch_predict", json={"data_source": good}).status_code == 200
