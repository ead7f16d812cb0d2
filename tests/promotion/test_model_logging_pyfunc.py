"""The production model through MLflow's own tools with what `pd.read_csv` gives everyone: float64 columns."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from _serving import PRODUCTION_URI, add_version, holdout_rows, mlflow_models_serve
from seedcore.datasets import BUILTIN_FEATURES
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.e2e


@pytest.fixture
def csv_frame(settings, tmp_path):
    """A promoted version, and holdout rows written to CSV and read back with pandas' defaults."""
    registry = Registry(settings)  # also points MLflow's fluent API at this test's store
    _, booster = add_version(settings, registry, seed=3)
    path = tmp_path / "rows.csv"
    pd.DataFrame(holdout_rows(settings, 12), columns=BUILTIN_FEATURES).to_csv(path, index=False)
    frame = pd.read_csv(path)
    assert (frame.dtypes == np.float64).all()
    expected = booster.inplace_predict(frame.to_numpy(dtype=np.float32))
    return frame, expected


def test_signature_declares_double_columns(settings, csv_frame):
    info = mlflow.models.get_model_info(PRODUCTION_URI)
    assert {spec.type.name for spec in info.signature.inputs.inputs} == {"double"}
    assert info.signature.inputs.input_names() == list(BUILTIN_FEATURES)


def test_pyfunc_predicts_a_read_csv_frame(csv_frame):
    frame, expected = csv_frame
    got = np.asarray(mlflow.pyfunc.load_model(PRODUCTION_URI).predict(frame))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_mlflow_models_predict_a_read_csv_frame(csv_frame, tmp_path):
    frame, expected = csv_frame
    out = tmp_path / "out.json"
    mlflow.models.predict(PRODUCTION_URI, input_data=frame, env_manager="local", output_path=str(out))
    got = pd.read_json(out)["predictions"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_mlflow_models_serve_takes_the_csv_itself(settings, csv_frame, tmp_path):
    frame, expected = csv_frame
    with mlflow_models_serve(settings, tmp_path / "serve.log") as port:
        for body, kind in ((frame.to_csv(index=False), "text/csv"),
                           (frame.to_json(orient="split", index=False), "application/json")):
            if kind == "application/json":
                body = '{"dataframe_split": %s}' % body
            response = requests.post(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": kind}, timeout=60)
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response.json()["predictions"], expected, rtol=0, atol=1e-6)
