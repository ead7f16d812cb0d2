"""The flywheel page at /ui, as headless Chromium renders it: empty, after a first sweep, after the drift demo
(monitor fires, a new version). Screenshots stay in the test's dir."""

from __future__ import annotations

import threading
import time

import pytest
from werkzeug.serving import make_server

from _tuning import FAST
from deploy.test_browser import browse
from seedcore.api import create_app
from seedcore.datasets import BUILTIN_FEATURES, BUILTIN_LABEL, builtin_frame
from seedcore.monitoring.scenario import SHIFTED_FEATURE, drifted_rows
from seedcore.services import services_of

pytestmark = pytest.mark.e2e
SECTIONS = ("production", "auc", "drift", "jobs", "watchers", "incidents", "evolution", "energy")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def served(migrated_settings):
    settings = migrated_settings.replace(live_min_rows=100, live_window_rows=300)
    app = create_app(settings)
    app.config["TESTING"] = True
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield settings, app, app.test_client(), f"http://127.0.0.1:{server.server_port}/ui"
    server.shutdown()
    services_of(app).stop()


def _look(url, path, name):
    """The page's DOM as Chromium built it, and its screenshot (checked to be a real PNG)."""
    dom = browse(url, path / f"{name}.dom", dom=True, budget_ms=2_000)
    shot = path / f"{name}.png"
    browse(url, shot, dom=False, budget_ms=2_000, window="1400,2600")  # the whole page
    assert shot.read_bytes()[:8] == PNG and shot.stat().st_size > 10_000
    assert all(f"id=\"{section}\"" in dom for section in SECTIONS), dom[:500]
    return dom


def _outcomes(client, rows, labels):
    ids = client.post("/xgboost/predict", json={"instances": rows}).get_json()["prediction_ids"]
    assert client.post("/xgboost/feedback", json={"prediction_ids": ids, "labels": labels}).status_code == 200


def test_the_page_in_three_states(served, ray_session, tmp_path):
    settings, app, client, url = served
    empty = _look(url, tmp_path, "1-empty")
    assert "no model in production yet" in empty and "no jobs yet" in empty

    version = client.post("/xgboost/tune", json={**FAST, "experiment_name": "first"}).get_json()["model_version"]
    time.sleep(1.0)  # the ledger's row is written just after the answer
    first = _look(url, tmp_path, "2-first-sweep")
    assert f'id="production-version">{version}<' in first and "model_promoted" in first
    assert "succeeded" in first and ">api<" in first and "no jobs measured yet" not in first

    normal = builtin_frame(n_rows=200, seed=11)
    _outcomes(client, normal[BUILTIN_FEATURES].round(6).values.tolist(), normal[BUILTIN_LABEL].astype(int).tolist())
    monitor = client.post("/xgboost/monitors", json={
        "name": "live-auc-guard", "metric": "live_auc", "threshold": 0.70, "min_samples": 100,
        "window": {"rows": 300}, "cooldown_s": 600, "tune": {**FAST, "experiment_name": "retune"}}).get_json()
    _outcomes(client, *drifted_rows(300, seed=1))
    fired = client.post(f"/xgboost/monitors/{monitor['id']}/check").get_json()
    assert fired["fired"] is True, fired
    deadline = time.monotonic() + 120
    while client.get(f"/xgboost/tune/status/{fired['job_id']}").get_json()["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    _outcomes(client, *drifted_rows(300, seed=2))  # production after the new version
    time.sleep(1.0)
    drift = _look(url, tmp_path, "3-after-drift")
    assert "model_degradation_detected" in drift and f"monitor:{monitor['id']}" in drift
    assert f">{SHIFTED_FEATURE}<" in drift and "class=\"warn\"" in drift  # the shifted feature, in red
    assert drift.count("class=\"live\"") >= 1 and "class=\"promotion\"" in drift
