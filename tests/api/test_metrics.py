"""`GET /metrics` after real traffic, read with Prometheus' own text parser: in one process, and summed
over the workers of a real `seedcore serve` (gunicorn, PROMETHEUS_MULTIPROC_DIR made and removed by us)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from _metrics import samples, value
from bench._ports import free_port
from _serving import GUIDE_ROW, add_version, wait_for
from seedcore.db.tables_jobs import TuningJob
from seedcore.promotion.registry import Registry
from seedcore.services import services_of

pytestmark = pytest.mark.e2e


def test_metrics_after_real_traffic(app, client):
    settings = services_of(app).settings
    version, _ = add_version(settings, Registry(settings), seed=7)
    client.post("/xgboost/refresh_model")
    with services_of(app).database.session() as session:  # finished jobs: the runner leaves them be
        session.add_all([TuningJob(state="succeeded", request={}, trigger="schedule:a1b2", kind="tune"),
                         TuningJob(state="succeeded", request={}, trigger="schedule:c3d4", kind="tune"),
                         TuningJob(state="failed", request={}, trigger="api", kind="train")])
    before = samples(client.get("/metrics").get_data(as_text=True))
    for _ in range(3):
        assert client.post("/xgboost/predict", json={"features": GUIDE_ROW}).status_code == 200
    assert client.post("/xgboost/predict", json={"instances": [GUIDE_ROW, GUIDE_ROW]}).status_code == 200
    assert client.post("/xgboost/predict", json={"features": "nope"}).status_code == 400
    assert client.get("/no/such/page/secret-token").status_code == 404

    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    page = samples(response.get_data(as_text=True))
    predict = {"endpoint": "/xgboost/predict", "method": "POST"}
    grew = lambda name, **labels: value(page, name, **labels) - value(before, name, **labels)  # noqa: E731
    assert grew("seedcore_http_requests_total", status="200", **predict) == 4
    assert grew("seedcore_http_requests_total", status="400", **predict) == 1
    assert grew("seedcore_http_request_duration_seconds_count", **predict) == 5
    assert grew("seedcore_http_requests_total", endpoint="<unmatched>", method="GET", status="404") == 1
    assert not any("secret-token" in str(key) for key in page)  # a caller's path never becomes a label
    assert grew("seedcore_predictions_total", model_version=str(version)) == 5  # rows, not requests
    assert value(page, "seedcore_served_model_version", model_name=settings.model_name) == version
    assert value(page, "seedcore_jobs", state="succeeded", trigger="schedule", kind="tune") == 2
    assert value(page, "seedcore_jobs", state="failed", trigger="api", kind="train") == 1
    assert ("seedcore_live_labelled_predictions", (("model_version", str(version)),)) in page


def test_metrics_add_up_over_gunicorn_workers(migrated_settings, tmp_path):
    settings = migrated_settings
    add_version(settings, Registry(settings), seed=8)
    port, scratch = free_port(), tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "SEEDCORE_DATA_DIR": str(settings.data_dir), "SEEDCORE_MLRUNS_DIR": str(settings.mlruns_dir),
           "SEEDCORE_PORT": str(port), "TMPDIR": str(scratch)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    seedcore = str(Path(sys.executable).parent / "seedcore")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([seedcore, "serve", "--workers", "2"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or _answers(url), timeout=120, interval=0.3)
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        pids, sent = set(), 0
        # fresh connections: the kernel spreads them over the workers that accept; on a loaded machine the second
        # may still be loading the model for the first ones (seen: 20 of 20 to one worker), so go on, bounded
        while sent < 20 or (len(pids) < 2 and sent < 300):
            assert requests.post(f"{url}/xgboost/predict", json={"features": GUIDE_ROW}, timeout=30).ok
            sent += 1
            pids.add(requests.get(f"{url}/xgboost/model_info", timeout=30).json()["serving"]["pid"])
        assert len(pids) == 2, f"both workers answered ({sent} requests)"
        assert [p.name for p in scratch.iterdir() if p.name.startswith("seedcore-prometheus-")]
        for _ in range(4):  # whichever worker answers the scrape, it counts every worker's requests
            page = samples(requests.get(f"{url}/metrics", timeout=30).text)
            assert value(page, "seedcore_http_requests_total", endpoint="/xgboost/predict", method="POST",
                         status="200") == sent
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert not [p for p in scratch.iterdir() if p.name.startswith("seedcore-prometheus-")], "left behind"


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False
