"""MLflow's own tools read the same production model: `mlflow.pyfunc.load_model` and
`mlflow models serve` agree with our predict on the same rows."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from _serving import PRODUCTION_URI, add_version, holdout_rows, mlflow_models_serve, serve_app, stop_app
from seedcore.datasets import BUILTIN_FEATURES
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.e2e


@pytest.fixture
def production(settings):
    """Two versions, the second in production; our predictions for 20 holdout rows."""
    registry = Registry(settings)  # also points MLflow's fluent API at this test's store
    add_version(settings, registry, seed=1)
    version, _ = add_version(settings, registry, seed=2, depth=3)
    rows = holdout_rows(settings, 20).astype(np.float64)
    rows[1, 2] = np.nan
    app = serve_app(settings)
    try:
        instances = [[None if np.isnan(v) else float(v) for v in row] for row in rows]
        body = app.test_client().post("/xgboost/predict", json={"instances": instances}).get_json()
    finally:
        stop_app(app)
    assert body["model_version"] == version
    return rows, np.asarray(body["predictions"])


def test_pyfunc_load_model_agrees_with_our_predict(production):
    rows, ours = production
    model = mlflow.pyfunc.load_model(PRODUCTION_URI)
    theirs = np.asarray(model.predict(pd.DataFrame(rows.astype(np.float32), columns=BUILTIN_FEATURES)))
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-6)


def test_mlflow_models_serve_agrees_with_our_predict(settings, production, tmp_path):
    rows, ours = production
    with mlflow_models_serve(settings, tmp_path / "mlflow-serve.log") as port:
        frame = pd.DataFrame(rows.astype(np.float32), columns=BUILTIN_FEATURES)
        split = frame.astype(object).where(frame.notna(), None).to_dict(orient="split", index=False)
        response = requests.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_split": split}, timeout=60)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["predictions"], ours, rtol=0, atol=1e-6)
