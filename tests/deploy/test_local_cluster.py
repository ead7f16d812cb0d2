"""The distributed layout from real processes (scripts/local-cluster): PostgreSQL with two databases, an
MLflow tracking server, two Ray nodes (the second without sight of the first one's disk when run as root),
the API attached to both, two serving replicas.

One test walks the whole story, because each step needs the state the previous one left: a sweep over
REST runs trials on both nodes, its winner is promoted and both replicas serve it within a poll interval;
a second sweep loses a node midway and still ends cleanly; `down` leaves no process, database or state dir
behind. Every part answers as this cluster's own (the instance id `up` drew).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from _cluster import POLL_S, call, local_cluster, loopback_cluster, marked_processes, ray_nodes
from _pg import postgres_base_url
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.e2e

TAG_NODE = "seedcore.node"
DATA = "loopback.csv"  # 20,000 rows
SPACE = {"eta": {"type": "loguniform", "lower": 0.02, "upper": 0.1}, "max_depth": 6, "num_boost_round": 800}
# One CPU per node and two trials at once: both nodes hold a trial; no pruning before the last round.
# Trials of many seconds: Tune hands a finished trial's actor to the next trial, so trials shorter than a
# Ray worker takes to start on the second node would all run on the first.
SWEEP = {"config_type": "conservative", "experiment_name": "loopback", "data_source": DATA,
         "label_column": "target", "custom_search_space": SPACE,
         "custom_tune_config": {"num_samples": 4, "max_concurrent_trials": 2, "seed": 3, "grace_period": 800}}
SLOW_SWEEP = {**SWEEP, "experiment_name": "loopback_node_lost", "custom_search_space": {**SPACE, "num_boost_round": 1000},
              "custom_tune_config": {"num_samples": 6, "max_concurrent_trials": 2, "seed": 4, "grace_period": 1000}}


@pytest.mark.timeout(600)
def test_loopback_cluster_sweeps_on_both_nodes_serves_the_winner_and_survives_a_lost_node():
    # A short path: Ray's unix sockets live under it and may not exceed 107 bytes.
    state = Path(tempfile.mkdtemp(prefix="seedcore-lc-", dir="/tmp"))
    kept = Path(f"{state}-logs")
    try:
        _story(state, kept)
    except BaseException:
        print(f"the loopback cluster's logs are kept in {kept}")
        raise
    shutil.rmtree(state, ignore_errors=True)


def _story(state: Path, kept: Path) -> None:
    started = time.monotonic()
    with loopback_cluster(state, postgres_base_url()) as endpoints:
        try:
            _sweeps(state, endpoints)
        except BaseException:  # `down` removes the state dir: keep the logs for a look
            shutil.copytree(state / "logs", kept, dirs_exist_ok=True)
            raise
        databases = json.loads((state / "cluster.json").read_text())["databases"]
        down = local_cluster(state, "down", timeout=120)
        assert down.returncode == 0, down.stderr
        assert marked_processes(state) == []
        assert not state.exists()
        assert _existing(databases) == []
    print(f"loopback cluster: up {endpoints['_up_s']} s, whole test {time.monotonic() - started:.0f} s")


def _sweeps(state: Path, endpoints: dict) -> None:
    if os.geteuid() == 0:
        assert (state / "node2-isolated").exists()  # the second node cannot see the head's data dir
    instance = json.loads((state / "cluster.json").read_text())["instance_id"]
    for name in ("API", "SERVE_1", "SERVE_2"):
        assert call("GET", f"{endpoints[name]}/health", timeout=10)[1]["instance_id"] == instance, name
    api, mlflow = endpoints["API"], MlflowClient(tracking_uri=endpoints["MLFLOW"], registry_uri=endpoints["MLFLOW"])
    _write_data(state / "api" / DATA)  # the API's data dir
    token = (state / "ray_token").read_text()
    node_ids = {n["raylet"]["nodeId"] for n in ray_nodes(endpoints["RAY_DASHBOARD"], token)}
    assert len(node_ids) == 2

    version = _sweep_on_both_nodes(api, mlflow, node_ids)
    _replicas_serve(endpoints, version, within_s=POLL_S + 8)
    _sweep_losing_a_node(state, api, mlflow)
    _replicas_serve(endpoints, _production_version(mlflow), within_s=POLL_S + 8)


def _existing(databases: list[str]) -> list[str]:
    engine = create_engine(make_url(postgres_base_url()).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as connection:
            return list(connection.execute(text("SELECT datname FROM pg_database WHERE datname = ANY(:names)"),
                                           {"names": databases}).scalars())
    finally:
        engine.dispose()


def _write_data(path: Path, rows: int = 20_000) -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(rows, 10))
    y = (rng.random(rows) < 1 / (1 + np.exp(-(x[:, 0] - 0.5 * x[:, 1] + 0.3 * x[:, 2] * x[:, 3])))).astype(int)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(10)]).assign(target=y)
    frame.to_csv(path, index=False)


def _sweep_on_both_nodes(api: str, mlflow: MlflowClient, node_ids: set[str]) -> int:
    status, result = call("POST", f"{api}/xgboost/tune", SWEEP)
    assert status == 200, result
    assert result["promotion"]["status"] == "success", result["promotion"]
    parent = mlflow.get_run(result["mlflow"]["parent_run_id"])
    assert int(parent.data.tags["seedcore.cluster.nodes"]) == 2
    assert int(parent.data.tags["seedcore.cluster.cpus"]) == 2
    children = _children(mlflow, parent.info.experiment_id, parent.info.run_id)
    nodes = {run.data.tags.get(TAG_NODE) for run in children}
    assert nodes == node_ids, f"trials ran on {nodes}, the cluster has {node_ids}; trials: {result['trials']}"
    return int(result["model_version"])


def _replicas_serve(endpoints: dict, version: int, within_s: float) -> None:
    """Both replicas report `version` and predict with it, within `within_s` of now."""
    deadline = time.monotonic() + within_s
    for name in ("SERVE_1", "SERVE_2"):
        while True:
            _, info = call("GET", f"{endpoints[name]}/xgboost/model_info", timeout=10)
            if int(info.get("version") or 0) == version:
                break
            assert time.monotonic() < deadline, f"{name} still serves {info.get('version')}, not {version}"
            time.sleep(0.2)
        status, answer = call("POST", f"{endpoints[name]}/xgboost/predict", {"features": [0.1] * 10}, timeout=10)
        assert status == 200, answer


def _sweep_losing_a_node(state, api: str, mlflow: MlflowClient) -> None:
    status, job = call("POST", f"{api}/xgboost/tune/submit", SLOW_SWEEP)
    assert status == 202, job
    url = f"{api}/xgboost/tune/status/{job['job_id']}"
    deadline = time.monotonic() + 120
    while call("GET", url)[1]["progress"]["trials_done"] < 1:  # trials are running on both nodes now
        assert time.monotonic() < deadline, "the second sweep never got going"
        time.sleep(0.3)
    stopped = local_cluster(state, "stop", "ray-node2", "--kill", timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 300
    while (job := call("GET", url)[1])["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"the sweep did not end after losing a node: {job}"
        time.sleep(1)
    assert job["state"] in ("succeeded", "failed"), job
    if job["state"] == "failed":
        assert job["error"], job  # a clear error, not an empty one
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    running = mlflow.search_runs(experiments, filter_string="attributes.status = 'RUNNING'")
    assert running == [], [r.info.run_name for r in running]


def _children(mlflow: MlflowClient, experiment_id: str, parent_id: str) -> list:
    return mlflow.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


def _production_version(mlflow: MlflowClient) -> int:
    name = "utility_risk_model"
    return int(mlflow.get_model_version_by_alias(name, "production").version)
