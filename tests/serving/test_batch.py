"""`POST /xgboost/batch_predict`: CSV and Parquet from the data dir, streamed in chunks into a new
Parquet file; bad paths, columns and values refused with the field at fault."""

from __future__ import annotations

import math
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from _serving import add_version, holdout_rows, serve_app, stop_app
from seedcore.serving.batch import PREDICTIONS_DIRNAME
from seedcore.config import Settings
from seedcore.datasets import BUILTIN_FEATURES
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.unit

CHUNK = 7
N_ROWS = 50


@pytest.fixture(scope="module")
def served(tmp_path_factory, mlflow_template):
    """A serve-role app (chunks of 7 rows) over one production version and a few input files."""
    root = tmp_path_factory.mktemp("batch")
    (root / "mlruns").mkdir()
    shutil.copy(mlflow_template, root / "mlruns" / "mlflow.db")
    settings = Settings(data_dir=root / "data", mlruns_dir=root / "mlruns", batch_chunk_rows=CHUNK)
    settings.ensure_dirs()
    version, booster = add_version(settings, Registry(settings), seed=5, depth=3)
    x = holdout_rows(settings, N_ROWS).astype(np.float64)
    x[4, 0] = np.nan
    frame = pd.DataFrame(x, columns=BUILTIN_FEATURES)
    frame.insert(0, "customer", [f"c{i}" for i in range(N_ROWS)])
    frame.to_csv(settings.data_dir / "rows.csv", index=False)
    (settings.data_dir / "inputs").mkdir()
    frame.to_parquet(settings.data_dir / "inputs" / "rows.parquet", index=False)
    frame.rename(columns={f: f"a{f}" for f in BUILTIN_FEATURES}).to_csv(settings.data_dir / "renamed.csv", index=False)
    texty = frame.astype({"f3": object})
    texty.loc[30, "f3"] = "high"  # ("n/a" would be read as missing, which is fine)
    texty.to_csv(settings.data_dir / "text.csv", index=False)
    infinite = frame.copy()
    infinite.loc[12, "f1"] = np.inf
    infinite.to_parquet(settings.data_dir / "infinite.parquet", index=False)
    (settings.data_dir / "notes.txt").write_text("f0,f1\n1,2\n")
    (settings.data_dir / "empty.csv").write_bytes(b"")
    (settings.data_dir / "header.csv").write_text(",".join(BUILTIN_FEATURES) + "\n")
    (root / "outside.csv").write_text(frame.to_csv(index=False))
    app = serve_app(settings)
    yield SimpleNamespace(settings=settings, client=app.test_client(), version=version, booster=booster,
                          x=x.astype(np.float32))
    stop_app(app)


def batch(served, **payload):
    return served.client.post("/xgboost/batch_predict", json=payload)


def read_output(body) -> pd.DataFrame:
    return pq.read_table(body["output_path"]).to_pandas()


@pytest.mark.parametrize("source", ["rows.csv", "inputs/rows.parquet", "ABSOLUTE/rows.csv"])
def test_batch_predict_equals_inplace_predict(served, source):
    source = source.replace("ABSOLUTE", str(served.settings.data_dir))  # the guide sends absolute paths
    response = batch(served, data_source=source, feature_columns=BUILTIN_FEATURES)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "success" and body["model_version"] == served.version
    assert body["rows"] == N_ROWS and body["chunks"] == math.ceil(N_ROWS / CHUNK)
    out = read_output(body)
    assert list(out.columns) == ["row", "prediction"] and out["row"].tolist() == list(range(N_ROWS))
    np.testing.assert_allclose(out["prediction"], served.booster.inplace_predict(served.x), rtol=0, atol=1e-6)
    assert body["output_source"] == f"{PREDICTIONS_DIRNAME}/{body['output_path'].rsplit('/', 1)[1]}"
    assert body["output_path"].startswith(str(served.settings.data_dir / PREDICTIONS_DIRNAME))
    assert f"-v{served.version}-" in body["output_path"]


def test_feature_columns_default_to_the_models_names_and_match_by_name_in_any_order(served):
    default = read_output(batch(served, data_source="rows.csv").get_json())
    shuffled = read_output(batch(served, data_source="rows.csv", feature_columns=BUILTIN_FEATURES[::-1]).get_json())
    want = served.booster.inplace_predict(served.x)
    np.testing.assert_allclose(default["prediction"], want, atol=1e-6)
    np.testing.assert_allclose(shuffled["prediction"], want, atol=1e-6)


def test_other_column_names_are_taken_in_feature_order(served):
    columns = [f"a{f}" for f in BUILTIN_FEATURES]
    body = batch(served, data_source="renamed.csv", feature_columns=columns).get_json()
    assert body["feature_columns"] == columns
    np.testing.assert_allclose(read_output(body)["prediction"], served.booster.inplace_predict(served.x), atol=1e-6)


def test_every_call_writes_a_new_file(served):
    paths = {batch(served, data_source="rows.csv").get_json()["output_path"] for _ in range(3)}
    assert len(paths) == 3
    written = sorted(p.name for p in (served.settings.data_dir / PREDICTIONS_DIRNAME).iterdir())
    assert not [name for name in written if name.startswith(".")]  # no temp files left behind
    assert {p.rsplit("/", 1)[1] for p in paths} <= set(written)


def test_a_non_number_is_reported_with_its_row(served):
    error = batch(served, data_source="text.csv").get_json()["error"]
    assert "'f3'" in error and "'high'" in error and "row 30" in error


def test_a_refused_file_leaves_no_output(served):
    before = set((served.settings.data_dir / PREDICTIONS_DIRNAME).glob("*")) \
        if (served.settings.data_dir / PREDICTIONS_DIRNAME).exists() else set()
    assert batch(served, data_source="text.csv").status_code == 400  # fails in the 5th chunk
    after = set((served.settings.data_dir / PREDICTIONS_DIRNAME).glob("*"))
    assert after == before


FIRST9 = BUILTIN_FEATURES[:9]
BAD_BATCH = [
    ({}, "data_source"),
    ({"data_source": ""}, "data_source"),
    ({"data_source": 7}, "data_source"),
    ({"data_source": "../outside.csv"}, "data_source"),
    ({"data_source": "OUTSIDE"}, "data_source"),
    ({"data_source": "/etc/passwd"}, "data_source"),
    ({"data_source": "s3://bucket/rows.csv"}, "data_source"),
    ({"data_source": "missing.csv"}, "data_source"),
    ({"data_source": "notes.txt"}, "data_source"),
    ({"data_source": "empty.csv"}, "data_source"),
    ({"data_source": "header.csv"}, "data_source"),
    ({"data_source": "infinite.parquet"}, "data_source"),
    ({"data_source": "rows.csv", "feature_columns": ["f0", "f1"]}, "feature_columns"),
    ({"data_source": "rows.csv", "feature_columns": FIRST9 + ["nope"]}, "feature_columns"),
    ({"data_source": "rows.csv", "feature_columns": ["f0"] * 10}, "feature_columns"),
    ({"data_source": "rows.csv", "feature_columns": "f0,f1"}, "feature_columns"),
    ({"data_source": "rows.csv", "feature_columns": FIRST9 + ["customer"]}, "feature_columns"),
    ({"data_source": "renamed.csv"}, "feature_columns"),
    ({"data_source": "text.csv"}, "feature_columns"),
    ({"data_source": "rows.csv", "chunk_rows": 5}, "chunk_rows"),
]


@pytest.mark.parametrize("payload,field", BAD_BATCH)
def test_bad_batch_inputs(served, payload, field):
    if payload.get("data_source") == "OUTSIDE":  # absolute, but outside the data dir
        payload = {**payload, "data_source": str(served.settings.data_dir.parent / "outside.csv")}
    response = batch(served, **payload)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["status"] == "error" and body["field"] == field and body["error"]


def test_no_model_means_503(settings):
    app = serve_app(settings)
    try:
        response = app.test_client().post("/xgboost/batch_predict", json={"data_source": "rows.csv"})
    finally:
        stop_app(app)
    assert response.status_code == 503 and "no_model_loaded" in response.get_json()["error"]
