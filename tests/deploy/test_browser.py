"""A real browser (Debian's headless Chromium) looks at what a person would: our `/docs` page lists our
endpoints, and MLflow's UI shows a finished sweep's runs. Screenshots are kept in the test's temp dir."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest
import requests
from werkzeug.serving import make_server

from bench._ports import free_port
from _serving import wait_for
from seedcore.runtime.observability import child_env
from seedcore.server.mlflow_ui import MLFLOW_SERVER_ENV
from seedcore.tuning import run_sweep

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# MLflow 3.17's UI opens experiments on the GenAI pages unless the "Model training" view is asked for.
ML_VIEW = "workflowType=machine_learning"


def browse(url: str, out, *, dom: bool, budget_ms: int = 30_000, window: str = "1400,1000") -> str:
    """Load `url` headless; the DOM after `budget_ms` of virtual time, or a screenshot at `out`."""
    assert CHROMIUM, "Chromium is missing: install Debian's package (`apt-get install -y chromium`; scripts/test does as root)"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
               f"--user-data-dir={out.parent / 'chromium-profile'}", f"--window-size={window}",
               f"--virtual-time-budget={budget_ms}", "--dump-dom" if dom else f"--screenshot={out}", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def live_api(app):
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def mlflow_ui(migrated_settings, tmp_path):
    settings, port = migrated_settings, free_port()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", settings.tracking_uri,
               "--default-artifact-root", settings.artifact_root, "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]
    with open(tmp_path / "mlflow-ui.log", "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**child_env(), **MLFLOW_SERVER_ENV},
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or _answers(url), timeout=240, interval=1)
        assert proc.poll() is None, (tmp_path / "mlflow-ui.log").read_text(errors="replace")[-3000:]
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # uvicorn's workers may ignore it while busy
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def test_docs_page_lists_our_endpoints(live_api, tmp_path):
    paths = ("/xgboost/tune", "/xgboost/tune/submit", "/xgboost/predict", "/xgboost/model_info", "/mfb/incidents",
             "/health")
    dom = rendered(f"{live_api}/docs", tmp_path, 'data-path="/xgboost/predict"')
    for path in paths:
        assert f'data-path="{path}"' in dom, f"{path} not on the docs page"
    browse(f"{live_api}/docs", tmp_path / "docs.png", dom=False)
    assert (tmp_path / "docs.png").stat().st_size > 10_000


def rendered(url: str, tmp_path, marker: str, attempts: int = 3) -> str:
    """The page's DOM once it shows `marker` (a loaded machine may need a second look)."""
    for _ in range(attempts):
        dom = browse(url, tmp_path / "unused.png", dom=True)
        (tmp_path / "last-dom.html").write_text(dom)
        if marker in dom:
            return dom
    raise AssertionError(f"{url} never showed {marker!r}; last DOM:\n{dom[-3000:]}")


def test_mlflow_ui_shows_the_sweeps_runs(migrated_settings, ray_session, mlflow_ui, tmp_path):
    result = run_sweep(migrated_settings, space_type="conservative", config_type="conservative",
                       custom_tune_config={"num_samples": 2}, experiment_name="seen_in_a_browser")
    experiment = result["mlflow"]["experiment_id"]
    from mlflow import MlflowClient

    runs = MlflowClient(tracking_uri=migrated_settings.tracking_uri).search_runs([experiment])
    names = {r.info.run_name for r in runs}
    parent = next(n for n in names if n.startswith("sweep-"))
    trials = {r.info.run_id: r.info.run_name for r in runs if r.info.run_name.startswith("trial-")}
    assert len(trials) == 2

    page = f"{mlflow_ui}/#/experiments/{experiment}?{ML_VIEW}"
    dom = rendered(page, tmp_path, parent)  # the sweep's run in the experiment's runs table
    assert "seen_in_a_browser" in dom and "Model registry" in dom
    # Its trials, side by side by their readable names: the page MLflow's "Compare" button opens.
    ids = ",".join(f'"{run_id}"' for run_id in trials)
    compare = f'{mlflow_ui}/#/compare-runs?runs=[{ids}]&experiments=["{experiment}"]'
    dom = rendered(compare, tmp_path, "Comparing 2 Runs")
    for name in trials.values():
        assert name in dom, f"{name} not shown"
    browse(page, tmp_path / "mlflow-runs.png", dom=False)
    browse(compare, tmp_path / "mlflow-trials.png", dom=False)
    version = result["model_version"]
    browse(f"{mlflow_ui}/#/models/utility_risk_model/versions/{version}?{ML_VIEW}", tmp_path / "mlflow-version.png",
           dom=False)
    for shot in ("mlflow-runs.png", "mlflow-trials.png", "mlflow-version.png"):
        assert (tmp_path / shot).stat().st_size > 10_000
    print(f"screenshots in {tmp_path}")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False
