"""Cluster resources: a trial no node can hold is a 400 at once; trials waiting for a busy cluster say so;
each trial's run names its node; the parent run records the cluster; Tune storage reachable through Ray."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from _lifecycle import NO_RAY_DASHBOARD, clean_env
from _tuning import FAST, mlflow_client, sweep_runs
from seedcore.api import create_app
from seedcore.tuning import relay_storage
from seedcore.tuning.cluster import CLUSTER_TAG_PREFIX, LOOPBACK_ENV, TAG_NODE, alive_nodes
from seedcore.tuning.sweep import run_sweep
from seedcore.services import services_of

pytestmark = pytest.mark.integration


def test_a_trial_larger_than_every_node_is_a_400_naming_the_setting_and_the_largest_node(migrated_settings,
                                                                                        ray_session):
    largest = max(n["cpus"] for n in alive_nodes())
    app = create_app(migrated_settings.replace(cpus_per_trial=largest + 1))
    started = time.monotonic()
    response = app.test_client().post("/xgboost/tune/submit", json={**FAST, "experiment_name": "too_big"})
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["field"] == "cpus_per_trial"
    assert f"has {largest}" in body["error"]
    assert time.monotonic() - started < 10  # at once, not after the time budget
    assert app.test_client().get("/xgboost/tune/jobs").get_json()["total"] == 0  # no job was created
    services_of(app).stop()


def test_trials_waiting_for_a_busy_cluster_say_so_then_run(migrated_settings, ray_session):
    """Another job holds every free CPU: the sweep reports its waiting trials, and runs once the CPUs are free."""
    import ray

    @ray.remote
    class Hog:
        def ping(self):
            return True

    hog = Hog.options(num_cpus=ray_session.free()).remote()  # the run's Ray holds the others (conftest)
    ray.get(hog.ping.remote())
    reports: list[dict] = []
    release = threading.Timer(8.0, lambda: ray.kill(hog))
    release.start()
    try:
        result = run_sweep(migrated_settings, **FAST, experiment_name="busy", progress=reports.append)
    finally:
        release.cancel()
        ray.kill(hog)
    waiting = [r for r in reports if r.get("trials_waiting")]
    assert waiting, reports
    assert "waiting for free CPUs" in waiting[0]["waiting_reason"]
    assert reports[-1]["trials_waiting"] == 0 and reports[-1]["waiting_reason"] is None
    assert result["trials"]["completed"] >= 1


def test_each_trial_run_names_its_node_and_the_parent_records_the_cluster(migrated_settings, ray_session):
    import ray

    result = run_sweep(migrated_settings, **FAST, experiment_name="tagged")
    parent, children = sweep_runs(migrated_settings, result["mlflow"]["parent_run_id"])
    here = ray.get_runtime_context().get_node_id()
    assert children and {c.data.tags[TAG_NODE] for c in children} == {here}
    tags = parent.data.tags
    assert tags[f"{CLUSTER_TAG_PREFIX}nodes"] == str(len(alive_nodes()))
    assert tags[f"{CLUSTER_TAG_PREFIX}cpus"] == str(int(ray.cluster_resources()["CPU"]))
    assert here[:12] in tags[f"{CLUSTER_TAG_PREFIX}node_cpus"]


def test_a_local_ray_offers_the_cpus_the_settings_name(tmp_path):
    """SEEDCORE_RAY_NUM_CPUS=1 on a machine of more CPUs: the platform's own Ray offers one."""
    import subprocess
    import sys

    assert os.cpu_count() > 1
    env = clean_env(tmp_path, SEEDCORE_RAY_NUM_CPUS="1", **NO_RAY_DASHBOARD,
                    RAY_TMPDIR=tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    done = subprocess.run([sys.executable, "-c", "import ray\nfrom seedcore.config import Settings\n"
                           "from seedcore.tuning.cluster import cluster_cpus, ensure_ray\n"
                           "assert ensure_ray(Settings.from_env())\nprint(cluster_cpus())\nray.shutdown()"],
                          env=env, capture_output=True, text=True, timeout=180)
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "1"


def test_relay_storage_from_another_node_writes_and_reads_the_drivers_disk(ray_session):
    """Seen from a trial on another node, the relay does every operation on the driver's disk via its actor."""
    import ray

    relay_storage.driver_storage()  # starts the actor on this node
    handler = relay_storage.RelayHandler(ray.get_runtime_context().get_node_id())
    actor = ray.get_actor(relay_storage._ACTOR_PREFIX + handler.home_node_id, namespace=relay_storage.ACTOR_NAMESPACE)
    handler._target = (lambda fn, *args, **kwargs: ray.get(fn.remote(*args, **kwargs)), actor)  # as elsewhere
    remote = pafs.PyFileSystem(handler)
    root = tempfile.mkdtemp()
    source = tempfile.mkdtemp()
    with open(os.path.join(source, "model.ubj"), "wb") as f:
        f.write(b"\x01" * 5000)
    pafs.copy_files(source, f"{root}/exp/checkpoint_000000", source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=remote)  # what Tune does with a trial's checkpoint
    with open(f"{root}/exp/checkpoint_000000/model.ubj", "rb") as f:  # on this (the driver's) disk
        assert f.read() == b"\x01" * 5000
    listed = remote.get_file_info(pafs.FileSelector(f"{root}/exp", recursive=True))
    assert {(i.path.rsplit("/", 1)[1], i.size) for i in listed} == {("checkpoint_000000", None), ("model.ubj", 5000)}
    assert remote.open_input_stream(f"{root}/exp/checkpoint_000000/model.ubj").read() == b"\x01" * 5000
    with pytest.raises(Exception, match="not a relayed filesystem operation"):
        handler._do("call", "__class__")  # only filesystem operations travel, never arbitrary attributes


def test_a_local_ray_listens_on_loopback_only(ray_session):
    """The session's local Ray (GCS, raylet, workers, agents) accepts connections on 127.0.0.1 only."""
    import psutil

    from seedcore.tuning.cluster import gcs_address

    assert gcs_address().startswith("127.0.0.1:"), gcs_address()
    ray_processes = {p.pid for p in psutil.Process().children(recursive=True)}  # this session's, not others'
    assert len(ray_processes) >= 3, ray_processes  # GCS, raylet, workers ...
    listening = [c.laddr for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN
                 and c.pid in ray_processes and c.laddr.port == int(gcs_address().rsplit(":", 1)[1])]
    assert listening, "the GCS port is not listening"
    everyone = [c.laddr for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN
                and c.pid in ray_processes and c.laddr.ip in ("0.0.0.0", "::")]
    assert everyone == [], everyone


def test_with_no_address_the_platform_starts_its_own_ray_beside_one_another_program_started(tmp_path):
    """`ray start --head` on this machine (what another user or tool leaves running) records itself as the
    newest cluster; a process with no SEEDCORE_RAY_ADDRESS / RAY_ADDRESS must still start a Ray of its own,
    not join that one (plain `ray.init()` would)."""
    import subprocess
    import sys
    from pathlib import Path

    import psutil

    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "SEEDCORE_DATA_DIR": str(tmp_path / "data")}
    for key in ("RAY_ADDRESS", "SEEDCORE_RAY_ADDRESS"):
        env.pop(key, None)
    ray_cli = Path(sys.executable).with_name("ray")
    try:
        started = subprocess.run([str(ray_cli), "start", "--head", "--port=0", "--node-ip-address=127.0.0.1",
                                  "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"],
                                 env={**env, **LOOPBACK_ENV}, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        theirs = (ray_tmp / "ray" / "ray_current_cluster").read_text().strip()
        ours = subprocess.run(
            [sys.executable, "-c", "import ray\nfrom seedcore.config import Settings\n"
             "from seedcore.tuning.cluster import ensure_ray\nassert ensure_ray(Settings())\n"
             "print(ray.get_runtime_context().gcs_address)\nray.shutdown()"],
            env=env, check=True, capture_output=True, text=True, timeout=180)
        assert theirs, "ray start recorded no cluster address"
        assert ours.stdout.strip().splitlines()[-1] != theirs, ours.stderr[-2000:]
    finally:  # end only the processes of that `ray start` (a plain `ray stop` would end every Ray here): those
        # naming its directory or writing a file in it. Its agents rename themselves (`ray::DashboardAgent`, their
        # environment overwritten too) and outlive their raylet, but keep their logs there open.
        theirs_left = []
        for process in psutil.process_iter(["cmdline", "open_files"]):
            named = " ".join(process.info["cmdline"] or ())
            files = [f.path for f in process.info["open_files"] or ()]
            if any(str(ray_tmp) in text for text in (named, *files)):
                try:
                    process.kill()
                    theirs_left.append(process)
                except psutil.Error:
                    pass
        psutil.wait_procs(theirs_left, timeout=10)
        shutil.rmtree(ray_tmp, ignore_errors=True)


IDLE_WORKERS = """
import time
import psutil
from seedcore.config import Settings
from seedcore.tuning.cluster import ensure_ray
assert ensure_ray(Settings(ray_dashboard_port=0))
time.sleep(3)  # a prestarted worker would be up by now
workers = [p for p in psutil.Process().children(recursive=True)  # not the agents (ray::DashboardAgent ...)
           if p.name() != "raylet" and any("default_worker" in part or part.startswith("ray::IDLE")
                                           for part in p.cmdline())]
for worker in workers:
    print(" ".join(worker.cmdline())[:200])
print(len(workers))
"""


def test_a_local_ray_starts_no_worker_before_a_trial_asks_for_one(tmp_path):
    """A fresh process's local Ray has no Python worker until something runs: Ray's prestarted workers (one a
    CPU) would sit idle in a server until its first sweep (tuning/cluster.py: NO_PRESTART)."""
    import subprocess
    import sys

    ray_tmp = Path(tempfile.mkdtemp(prefix="rw", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "SEEDCORE_DATA_DIR": str(tmp_path / "data")}
    for key in ("RAY_ADDRESS", "SEEDCORE_RAY_ADDRESS"):
        env.pop(key, None)
    try:
        counted = subprocess.run([sys.executable, "-c", IDLE_WORKERS], env=env, capture_output=True, text=True,
                                 timeout=180)
        assert counted.returncode == 0, counted.stderr[-2000:]
        assert counted.stdout.split()[-1] == "0", counted.stdout
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_trial_actor_has_no_runtime_env_so_its_worker_starts_without_a_shim(ray_session, tmp_path):
    """Tune gives its trial actors PL_DISABLE_FORK in a runtime_env of their own, and Ray starts the worker of an
    actor with a runtime_env through a shim that imports Ray once more before the worker does. Under ensure_ray
    (what every sweep calls) a trial's actor has none."""
    import json

    import ray
    from ray import tune

    def trial(config):
        tune.report({"runtime_env": ray.get_runtime_context().get_runtime_env_string(),
                     "pl_disable_fork": os.environ.get("PL_DISABLE_FORK")})

    (result,) = tune.Tuner(trial, run_config=tune.RunConfig(storage_path=str(tmp_path), name="plain")).fit()
    assert result.error is None, result.error
    assert json.loads(result.metrics["runtime_env"]).get("env_vars", {}) == {}
    assert result.metrics["pl_disable_fork"] is None


def test_a_trial_worker_loads_xgboost_without_scikit_learn(ray_session):
    """A trial's actor imports our trainable, which imports XGBoost through seedcore._xgboost: XGBoost loads
    there without scikit-learn and SciPy's statistics (about half of a trial worker's start). An actor, as a
    trial is: Ray starts a fresh worker process for each."""
    import ray

    @ray.remote(num_cpus=0)
    class Trial:
        def modules(self):
            import sys

            from seedcore.tuning import trainable  # noqa: F401  (what a trial's actor loads first)

            import xgboost

            booster = xgboost.train({"nthread": 1}, xgboost.DMatrix([[0.0], [1.0]], label=[0, 1]), num_boost_round=2)
            return "sklearn" in sys.modules, "scipy.stats" in sys.modules, booster.num_boosted_rounds()

    actor = Trial.remote()
    try:
        sklearn_loaded, scipy_stats, rounds = ray.get(actor.modules.remote(), timeout=120)
    finally:
        ray.kill(actor)
    assert not sklearn_loaded and not scipy_stats and rounds == 2
