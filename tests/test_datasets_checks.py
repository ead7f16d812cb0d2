"""One data validation for tune, train, evaluate and batch: data no model can learn from is a 400 naming the
field and the column, before any MLflow run or version exists; `/tune/submit` checks the file's suffix, its
header, the named columns and then the whole file before answering 202 (more in test_data_guards)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _tuning import assert_nothing_happened
from seedcore.serving.batch import chunk_matrix
from seedcore.datasets import load_dataset
from seedcore.errors import DataError

pytestmark = pytest.mark.unit

TUNE = {"space_type": "conservative", "config_type": "conservative", "custom_tune_config": {"num_samples": 1}}
TRAIN = {"params": {"max_depth": 2, "num_boost_round": 3}}


def frame(rows: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    data = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    data["y"] = (data["a"] + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    return data


def _all_nan(f):
    f["b"] = np.nan


def _inf(f):
    f.loc[17, "c"] = np.inf


def _minus_inf(f):
    f.loc[5, "a"] = -np.inf


def _constant_label(f):
    f["y"] = 0


def _nothing_varies(f):
    f[["a", "b", "c"]] = 1.5


# (how the data is spoiled, field, what the message must name)
SPOILED = {
    "all-nan-feature": (_all_nan, "feature_columns", "'b'"),
    "infinite-value": (_inf, "data_source", "'c'"),
    "minus-infinite-value": (_minus_inf, "data_source", "'a'"),
    "constant-label": (_constant_label, "label_column", "'y'"),
    "no-feature-varies": (_nothing_varies, "feature_columns", "nothing to learn"),
}


def _write(settings, name: str, data: pd.DataFrame) -> str:
    path = settings.data_dir / name
    data.to_parquet(path, index=False) if name.endswith(".parquet") else data.to_csv(path, index=False)
    return name


@pytest.mark.parametrize("spoil,field,named", SPOILED.values(), ids=list(SPOILED))
@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_load_dataset_refuses_spoiled_data(settings, spoil, field, named, suffix):
    data = frame()
    spoil(data)
    source = _write(settings, f"d.{suffix}", data)
    with pytest.raises(DataError) as err:
        load_dataset(settings.data_dir, source, "y")
    assert err.value.field == field and named in err.value.message, err.value.to_dict()


@pytest.mark.parametrize("path,body", [("/xgboost/tune", TUNE), ("/xgboost/train", TRAIN)])
@pytest.mark.parametrize("spoil,field,named", SPOILED.values(), ids=list(SPOILED))
def test_tune_and_train_refuse_spoiled_data_and_register_nothing(module_client, module_settings, path, body, spoil,
                                                                  field, named):
    data = frame()
    spoil(data)
    source = _write(module_settings, "d.csv", data)
    response = module_client.post(path, json={**body, "data_source": source, "label_column": "y"})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["field"] == field and named in response.get_json()["error"]
    from _tuning import all_runs, model_versions

    assert all_runs(module_settings) == [] and model_versions(module_settings) == []


def test_batch_refuses_an_infinite_value_as_training_does(settings):
    """The same check judges a batch chunk: same field, the column and the file's row named."""
    data = frame()
    _inf(data)
    with pytest.raises(DataError) as trained:
        load_dataset(settings.data_dir, _write(settings, "d.csv", data), "y")
    with pytest.raises(DataError) as batch:
        chunk_matrix(data.iloc[10:30].reset_index(drop=True), ["a", "b", "c"], first_row=10)
    assert batch.value.field == trained.value.field == "data_source"
    assert "'c'" in batch.value.message and "row 17" in batch.value.message and "row 17" in trained.value.message


def _header_only(settings) -> str:
    (settings.data_dir / "header.csv").write_text("a,b,y\n")
    return "header.csv"


# Refused by /tune/submit before it answers 202.
SUBMIT_REFUSES = {
    "txt-suffix": (lambda s: _write(s, "d.txt", frame()), {"label_column": "y"}, "data_source"),
    "no-suffix": (lambda s: _write(s, "d", frame()), {"label_column": "y"}, "data_source"),
    "empty-file": (lambda s: (s.data_dir / "e.csv").write_bytes(b"") and "e.csv" or "e.csv", {"label_column": "y"},
                   "data_source"),
    "unknown-label": (lambda s: _write(s, "d.csv", frame()), {"label_column": "churned"}, "label_column"),
    "no-label-given": (lambda s: _write(s, "d.csv", frame()), {}, "label_column"),
    "unknown-feature": (lambda s: _write(s, "d.parquet", frame()), {"label_column": "y", "feature_columns": ["a", "z"]},
                        "feature_columns"),
    "label-as-feature": (lambda s: _write(s, "d.csv", frame()), {"label_column": "y", "feature_columns": ["a", "y"]},
                         "feature_columns"),
    "repeated-feature": (lambda s: _write(s, "d.csv", frame()), {"label_column": "y", "feature_columns": ["a", "a"]},
                         "feature_columns"),
    "builtin-unknown-feature": (lambda s: None, {"feature_columns": ["f0", "f99"]}, "feature_columns"),
}


@pytest.mark.parametrize("make,fields,field", SUBMIT_REFUSES.values(), ids=list(SUBMIT_REFUSES))
def test_submit_refuses_what_the_header_shows_will_fail(module_client, module_settings, make, fields, field):
    source = make(module_settings)
    body = {**TUNE, **fields, **({"data_source": source} if source else {})}
    response = module_client.post("/xgboost/tune/submit", json=body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["field"] == field, response.get_json()
    assert_nothing_happened(module_settings)


@pytest.mark.parametrize("source", ["a\x00b.csv", "lone\ud800.csv", "new\nline.csv"])
def test_a_data_source_with_control_characters_is_refused_naming_it(settings, source):
    """Callers without the API's guard (the CLI, the library) get a 400, not the OS's ValueError."""
    with pytest.raises(DataError) as err:
        load_dataset(settings.data_dir, source, "y")
    assert err.value.field == "data_source"
