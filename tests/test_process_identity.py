"""Owners of leases and jobs are processes named by host, pid and start time: a dead owner is seen as dead at
once, and a recycled pid is not mistaken for it. Real processes, real SIGKILL, real pid reuse (two pid
namespaces in a row, as a restarted container gets), real MLflow runs; leases on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from _pg import db, db_url  # noqa: F401  (fixtures)
from seedcore.db.locks import LeaseLock, new_owner
from seedcore.errors import ConflictError
from seedcore.jobs.store import INTERRUPTED, JobStore, local_process_alive
from seedcore.process_identity import START_TOLERANCE_S, ProcessIdentity, owner_alive, owner_token_alive
from seedcore.jobs.recovery import ORPHAN_CANCELLED

pytestmark = pytest.mark.integration

IDENTITY = "from seedcore.process_identity import ProcessIdentity as P; import json; i = P.current(); " \
           "print(json.dumps([i.host, i.pid, i.start]), flush=True)"

# A process that takes the promotion lease (for an hour), claims a running job with an MLflow run tagged
# with it - what a runner does - reports them, and waits to be killed.
HOLDER = textwrap.dedent("""
    import json, sys, time
    from seedcore import names
    from seedcore.config import Settings
    from seedcore.db.database import Database
    from seedcore.db.locks import LeaseLock, new_owner
    from seedcore.jobs.store import JobStore
    from seedcore.process_identity import ProcessIdentity
    from seedcore.promotion.registry import Registry, ensure_experiment

    db_url, data_dir, mlruns_dir = sys.argv[1:4]
    db = Database(db_url)
    owner = new_owner()
    assert LeaseLock(db, "promotion", lease_s=3600).try_acquire(owner)
    report = {"owner": owner}
    if data_dir:
        settings = Settings(data_dir=data_dir, mlruns_dir=mlruns_dir, database_url=db_url)
        me = ProcessIdentity.current()
        job = JobStore(db).create({"n": 1}, "orphaned", 1, owner=(me.pid, me.host, me.start))
        client = Registry(settings).client
        run = client.create_run(ensure_experiment(client, settings, "orphaned"), tags={names.TAG_JOB_ID: job["id"]})
        report.update(pid=me.pid, start=me.start, job_id=job["id"], run_id=run.info.run_id)
    print(json.dumps(report), flush=True)
    time.sleep(3600)
""")

# The process after a restart: the runner's start-up recovery, then the promotion lease.
RESTARTED = textwrap.dedent("""
    import json, os, sys
    import psutil
    from seedcore.config import Settings
    from seedcore.db.database import Database
    from seedcore.db.locks import LeaseLock, new_owner
    from seedcore.jobs.runner import JobRunner

    db_url, data_dir, mlruns_dir, recorded_pid = sys.argv[1:5]
    settings = Settings(data_dir=data_dir, mlruns_dir=mlruns_dir, database_url=db_url)
    db = Database(db_url)
    fooled = psutil.pid_exists(int(recorded_pid))  # what a bare pid says about the dead owner
    recovered = JobRunner(settings, db).recover_interrupted()
    taken = LeaseLock(db, "promotion", lease_s=3600).try_acquire(new_owner())
    print(json.dumps({"pid": os.getpid(), "bare_pid_says_alive": fooled, "recovered": recovered,
                      "lease_taken": taken}), flush=True)
""")


def _run_identity() -> tuple[str, int, str]:
    out = subprocess.run([sys.executable, "-c", IDENTITY], capture_output=True, text=True, check=True, timeout=120)
    host, pid, start = json.loads(out.stdout)
    return host, pid, start


def _start(args: list[str]) -> tuple[subprocess.Popen, dict]:
    """Start a holder and read its one-line report."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line:
        process.wait(60)
        raise AssertionError(f"the holder failed: {process.stderr.read()[-3000:]}")
    return process, json.loads(line)


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(60)
    for stream in (process.stdout, process.stderr):
        stream.close()


def test_this_process_is_named_by_host_pid_and_start_and_is_alive():
    me = ProcessIdentity.current()
    assert (me.host, me.pid) == (socket.gethostname(), os.getpid())
    boot, since = me.start.split("+")
    assert len(boot) == 16 and abs(float(since) - (psutil.Process().create_time() - psutil.boot_time())) < 0.05
    token = new_owner()
    assert ProcessIdentity.from_owner(token) == me and token != new_owner()  # unique to each holder
    assert me.alive() and owner_token_alive(token)
    assert ProcessIdentity.from_owner("http://127.0.0.1:8000") is None  # a server's URL names no process
    assert owner_token_alive("http://127.0.0.1:8000")  # so it waits for its lease to expire


def test_a_dead_process_is_dead_and_a_live_pid_with_another_start_is_not_its_owner():
    host, pid, start = _run_identity()  # that process has exited
    assert not owner_alive(pid, host, start) and not local_process_alive(pid, host, start)

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        since = psutil.Process(live.pid).create_time() - psutil.boot_time()
        boot = ProcessIdentity.current().start.split("+")[0]
        assert owner_alive(live.pid, host, f"{boot}+{since:.2f}")
        # an earlier process that had this pid (a row written before a restart) is not this one
        assert not owner_alive(live.pid, host, f"{boot}+{since - 100:.2f}")
        assert not owner_alive(live.pid, host, f"{boot}+{since - 3 * START_TOLERANCE_S:.2f}")
        assert not owner_alive(live.pid, host, f"{'0' * 16}+{since:.2f}")  # a boot before this one
        assert owner_alive(live.pid, host, None)  # a row from an older release: the pid alone decides
        assert owner_alive(live.pid, "another-host", f"{boot}+{since - 100:.2f}")  # cannot be seen from here
    finally:
        live.kill()
        live.wait(60)
    assert not owner_alive(live.pid, host, f"{boot}+{since:.2f}")


def test_a_lease_held_by_a_killed_process_is_taken_at_once(db, tmp_path):
    url = db.url.render_as_string(hide_password=False)
    holder, report = _start([sys.executable, "-c", HOLDER, url, "", ""])
    lock = LeaseLock(db, "promotion", lease_s=3600)
    try:
        assert lock.holder()["owner"] == report["owner"]
        with pytest.raises(ConflictError):  # alive: its lease stands
            with lock.hold(timeout=0.3, busy_message="promotion in progress"):
                pass
    finally:
        _kill(holder)
    assert lock.holder() is None  # its lease has an hour to run, but its holder is gone
    started = time.monotonic()
    with lock.hold(timeout=30) as owner:
        assert time.monotonic() - started < 2 and lock.holder()["owner"] == owner
    assert lock.holder() is None


def test_a_job_orphaned_by_a_killed_runner_is_cancelled_at_once(app, client, migrated_settings):
    """A job whose runner died while the server ran: cancel ends it now (cancelled, its MLflow run KILLED)
    instead of answering 202 and waiting for a runner that will never look."""
    settings = migrated_settings
    args = [sys.executable, "-c", HOLDER, settings.database_url, str(settings.data_dir), str(settings.mlruns_dir)]
    alive_holder, alive = _start(args)
    try:
        response = client.post(f"/xgboost/tune/{alive['job_id']}/cancel")
        assert response.status_code == 202 and response.get_json()["state"] == "running"  # its runner will see it
    finally:
        _kill(alive_holder)
    holder, report = _start(args)
    _kill(holder)
    response = client.post(f"/xgboost/tune/{report['job_id']}/cancel")
    assert response.status_code == 202
    body = response.get_json()
    assert body["state"] == "cancelled" and body["error"] == ORPHAN_CANCELLED
    from mlflow import MlflowClient

    mlflow = MlflowClient(tracking_uri=settings.tracking_uri)
    assert mlflow.get_run(report["run_id"]).info.status == "KILLED"


def test_a_recycled_pid_after_a_restart_does_not_keep_a_dead_owners_job_or_lease(migrated_settings):
    """Two processes in fresh pid namespaces one after the other get the same pid, as a restarted
    container's server does. The first claims a job (with a RUNNING MLflow run) and the promotion lease and
    is killed; the second, carrying its pid, recovers the job and takes the lease at once."""
    settings = migrated_settings
    namespace = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, "-c"]
    stores = [settings.database_url, str(settings.data_dir), str(settings.mlruns_dir)]
    first, report = _start([*namespace, HOLDER, *stores])
    try:
        time.sleep(2 * START_TOLERANCE_S)  # a server lives longer than the tolerance of start times
    finally:
        for child in psutil.Process(first.pid).children():
            child.send_signal(signal.SIGKILL)  # the namespace's first process: the server itself
        _kill(first)
    out = subprocess.run([*namespace, RESTARTED, *stores, str(report["pid"])], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    second = json.loads(out.stdout.strip().splitlines()[-1])
    assert second["pid"] == report["pid"] and second["bare_pid_says_alive"]  # the pid was recycled
    assert second["recovered"] == [report["job_id"]] and second["lease_taken"] is True

    from seedcore.db.database import Database

    job = JobStore(Database(settings.database_url)).get(report["job_id"])
    assert job["state"] == "failed" and job["error"].startswith(f"{INTERRUPTED}; cannot resume")  # no sweep to resume
    assert job["owner_pid"] == report["pid"] and job["owner_start"] == report["start"]
    from mlflow import MlflowClient

    assert MlflowClient(tracking_uri=settings.tracking_uri).get_run(report["run_id"]).info.status == "KILLED"
