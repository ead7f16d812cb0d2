"""The distributed layout from real processes (scripts/local-cluster), each on a loopback address of its own:
PostgreSQL with two databases, an MLflow tracking server, two Ray nodes (the second without sight of the
first one's disk when run as root), the API attached to both, two serving replicas.

One test walks the whole story, because each step needs the state the previous one left: a sweep over
REST runs trials on both nodes, its winner is promoted and both replicas serve it within a poll interval;
a replica killed leaves the other serving; the fault drill's short round passes on the same cluster (one
round of each fault: node 2 killed mid-sweep, its trials retried on the head; the API killed and restarted;
MLflow down; PostgreSQL restarted; node 2 cut from the head), leaving no run RUNNING; `down` leaves no process,
database, nftables table or state dir behind. Every part answers as this cluster's own (the instance id `up` drew), at its own address; a partition
between a replica and the tracking server shows in that replica's `/health` only, and `heal` ends it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from urllib.parse import urlsplit

from _cluster import POLL_S, call, local_cluster, loopback_cluster, marked_processes, ray_nodes

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


pytestmark = pytest.mark.e2e


@pytest.mark.timeout(1800)
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
    with loopback_cluster(state) as endpoints:
        try:
            _sweeps(state, endpoints)
            _drill(state, endpoints)
        except BaseException:  # `down` removes the state dir: keep the logs for a look
            shutil.copytree(state / "logs", kept, dirs_exist_ok=True)
            raise
        table = f"seedcore_lc_{json.loads((state / 'cluster.json').read_text())['instance_id']}"
        assert local_cluster(state, "partition", "ray-node2", "mlflow").returncode == 0  # `down` removes it too
        down = local_cluster(state, "down", timeout=120)
        assert down.returncode == 0, down.stderr
        assert marked_processes(state) == []  # PostgreSQL too: its data went with the state dir
        assert not state.exists()
        assert subprocess.run(["nft", "list", "table", "inet", table], capture_output=True).returncode != 0
    print(f"loopback cluster: up {endpoints['_up_s']} s, whole test {time.monotonic() - started:.0f} s")


def _sweeps(state: Path, endpoints: dict) -> None:
    if os.geteuid() == 0:
        assert (state / "node2-isolated").exists()  # the second node cannot see the head's data dir
    info = json.loads((state / "cluster.json").read_text())
    instance, where = info["instance_id"], info["addresses"]
    assert len(set(where.values())) == 7 and all(a.startswith("127.") and a != "127.0.0.1" for a in where.values())
    for name, part in (("API", "api"), ("SERVE_1", "serve-1"), ("SERVE_2", "serve-2"), ("MLFLOW", "mlflow"),
                       ("RAY_DASHBOARD", "ray-head")):
        assert urlsplit(endpoints[name]).hostname == where[part], (name, endpoints[name])
    assert endpoints["POSTGRES"].split(":")[0] == where["postgres"]
    for name in ("API", "SERVE_1", "SERVE_2"):
        assert call("GET", f"{endpoints[name]}/health", timeout=10)[1]["instance_id"] == instance, name
    _partition_shows_and_heals(state, endpoints)
    api, mlflow = endpoints["API"], MlflowClient(tracking_uri=endpoints["MLFLOW"], registry_uri=endpoints["MLFLOW"])
    _write_data(state / "api" / DATA)  # the API's data dir
    token = (state / "ray_token").read_text()
    nodes = ray_nodes(endpoints["RAY_DASHBOARD"], token)
    node_ids = {n["raylet"]["nodeId"] for n in nodes}
    assert len(node_ids) == 2
    assert {n["raylet"]["nodeManagerAddress"] for n in nodes} == {where["ray-head"], where["ray-node2"]}

    version = _sweep_on_both_nodes(api, mlflow, node_ids)
    _replicas_serve(endpoints, version, within_s=POLL_S + 8)
    replicas = call("GET", f"{api}/health", timeout=30)[1]["replicas"]  # the API knows both, with versions
    assert [(r["url"], r["status"], r["model_version"]) for r in replicas] == [
        (endpoints["SERVE_1"], "ok", str(version)), (endpoints["SERVE_2"], "ok", str(version))], replicas
    _a_replica_killed(state, endpoints, version)


def _partition_shows_and_heals(state: Path, endpoints: dict) -> None:
    """serve-1 cut from the tracking server: its `/health` says MLflow fails, serve-2's does not; heal: ok."""
    def mlflow_status(name: str) -> str:
        return call("GET", f"{endpoints[name]}/health", timeout=30)[1]["mlflow"]["status"]

    cut = local_cluster(state, "partition", "serve-1", "mlflow", timeout=60)
    assert cut.returncode == 0, cut.stderr
    assert mlflow_status("SERVE_1") == "error"
    assert mlflow_status("SERVE_2") == "ok"
    assert local_cluster(state, "heal", timeout=60).returncode == 0
    deadline = time.monotonic() + 30
    while mlflow_status("SERVE_1") != "ok":
        assert time.monotonic() < deadline, "serve-1 still cannot reach MLflow after heal"
        time.sleep(0.5)


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
            try:
                _, info = call("GET", f"{endpoints[name]}/xgboost/model_info", timeout=10)
            except OSError as exc:  # a replica started again may not listen yet
                info = {"version": None, "error": str(exc)}
            if int(info.get("version") or 0) == version:
                break
            assert time.monotonic() < deadline, f"{name} still serves {info.get('version')}, not {version}"
            time.sleep(0.2)
        status, answer = call("POST", f"{endpoints[name]}/xgboost/predict", {"features": [0.1] * 10}, timeout=10)
        assert status == 200, answer


def _a_replica_killed(state: Path, endpoints: dict, version: int) -> None:
    """serve-1 SIGKILLed: serve-2 goes on predicting, the API lists serve-1 unreachable; started again, it
    serves the production version."""
    assert local_cluster(state, "stop", "serve-1", "--kill", timeout=60).returncode == 0
    status, answer = call("POST", f"{endpoints['SERVE_2']}/xgboost/predict", {"features": [0.1] * 10}, timeout=10)
    assert status == 200, answer
    replicas = call("GET", f"{endpoints['API']}/health", timeout=30)[1]["replicas"]
    assert [r["status"] for r in replicas] == ["unreachable", "ok"], replicas
    started = local_cluster(state, "start", "serve-1", timeout=330)  # returns once it answers /health as ours
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 120
    while [r["status"] for r in call("GET", f"{endpoints['API']}/health", timeout=30)[1]["replicas"]] != ["ok", "ok"]:
        assert time.monotonic() < deadline, "serve-1 did not come back"
        time.sleep(0.5)
    _replicas_serve(endpoints, version, within_s=60)


def _drill(state: Path, endpoints: dict) -> None:
    """One round of each fault against a running sweep (node 2 killed mid-sweep among them: its trials are
    retried on the head); then no run is left RUNNING anywhere and both replicas serve what production is."""
    drill = local_cluster(state, "drill", "--short", timeout=1500)
    print(drill.stdout)
    assert drill.returncode == 0, drill.stdout + drill.stderr[-3000:]
    header = drill.stdout.splitlines()[0].split()
    assert header == ["fault", "requested", "recorded", "duplicates", "outcome", "recovery_s"], header
    assert "drill: 5/5 rounds passed" in drill.stdout
    mlflow = MlflowClient(tracking_uri=endpoints["MLFLOW"], registry_uri=endpoints["MLFLOW"])
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    running = mlflow.search_runs(experiments, filter_string="attributes.status = 'RUNNING'")
    assert running == [], [r.info.run_name for r in running]
    _replicas_serve(endpoints, _production_version(mlflow), within_s=POLL_S + 8)


def _children(mlflow: MlflowClient, experiment_id: str, parent_id: str) -> list:
    return mlflow.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


def _production_version(mlflow: MlflowClient) -> int:
    name = "utility_risk_model"
    return int(mlflow.get_model_version_by_alias(name, "production").version)
