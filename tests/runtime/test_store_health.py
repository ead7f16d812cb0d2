"""A store lost or made read-only under a running server: `/health` says degraded and why, writes answer 503
naming the store before any job or row exists, nothing dies (no SIGBUS from SQLite's WAL index), nothing
outlives the server, and the next start says what stands in its way.

Real files deleted, replaced and made immutable (`chattr +i`, as root; always undone), real `seedcore up`
processes where process behaviour is the point, real PostgreSQL set read-only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from _lifecycle import SEEDCORE, clean_env, session_processes, start, wait_until_gone
from _pg import fresh_postgres_database, postgres_base_url
from bench._ports import free_port
from _stores import immutable
from seedcore.cli.common import OUR_FAULT
from seedcore.db.engine import normalize_url
from seedcore.errors import DatabaseUnavailableError, RegistryUnavailableError
from seedcore.memory.store import IncidentStore
from seedcore.server.mlflow_ui import start_mlflow_ui, stop_process
from seedcore.runtime.store_health import PROBE_TTL_S, check_database, probe_mlflow_write, require_writable
from seedcore.services import services_of

pytestmark = pytest.mark.e2e

INCIDENT = {"event_type": "store_check", "outcome": "success", "salience": 0.5}
SUBMIT = {"space_type": "conservative", "custom_tune_config": {"num_samples": 1}}
TRAIN = {"params": {"max_depth": 2, "num_boost_round": 3}}


def sqlite_files(db: Path) -> list[Path]:
    return [db, Path(f"{db}-wal"), Path(f"{db}-shm")]


def error_of(response) -> str:
    body = response.get_json() if hasattr(response, "get_json") else response.json()
    assert body["status"] == "error", body
    return body["error"]


# -- our database deleted or replaced under a running app ------------------------------------------------
def test_a_deleted_database_is_degraded_and_refuses_writes_and_reads_alike(app, client, migrated_settings):
    path = Path(make_url(migrated_settings.database_url).database)
    assert client.post("/mfb/incidents", json=INCIDENT).status_code == 201
    assert client.get("/health").get_json()["database"]["status"] == "ok"

    path.unlink()

    health = client.get("/health").get_json()
    assert health["status"] == "degraded" and health["database"]["status"] == "error"
    assert f"our database {path} is missing" in health["database"]["error"]
    assert health["mlflow"]["status"] == "ok"  # the other store is fine
    for path_, body in [("/mfb/incidents", INCIDENT), ("/xgboost/tune/submit", SUBMIT), ("/xgboost/train", TRAIN)]:
        refused = client.post(path_, json=body)
        assert refused.status_code == 503, (path_, refused.get_json())
        assert "is missing" in error_of(refused) and "nothing was changed" in error_of(refused)
    # every read the same 503, whichever pooled connection would have answered (not 200 from the unlinked file)
    answers = {client.get("/mfb/incidents").status_code for _ in range(6)}
    assert answers == {503}
    assert not path.exists()  # no empty database was created in its place


def test_a_replaced_database_is_not_used(app, client, migrated_settings):
    path = Path(make_url(migrated_settings.database_url).database)
    assert client.post("/mfb/incidents", json=INCIDENT).status_code == 201
    copy = path.with_name("copy.db")
    shutil.copy(path, copy)
    os.replace(copy, path)  # the same name, another file (a restore from backup while running)

    health = client.get("/health").get_json()
    assert health["status"] == "degraded" and "was replaced" in health["database"]["error"]
    refused = client.post("/mfb/incidents", json=INCIDENT)
    assert refused.status_code == 503 and "was replaced" in error_of(refused)
    assert client.get("/mfb/incidents").status_code == 503


# -- MLflow's store read-only --------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["file", "directory"])
def test_a_read_only_mlflow_store_is_degraded_and_refuses_writes_that_need_it(app, client, migrated_settings,
                                                                             target):
    store = migrated_settings.mlruns_dir / "mlflow.db"
    assert client.get("/health").get_json()["mlflow"]["status"] == "ok"

    with immutable(store if target == "file" else store.parent):
        health = client.get("/health").get_json()
        assert health["status"] == "degraded" and health["mlflow"]["status"] == "error"
        assert f"MLflow store {store} is read-only" in health["mlflow"]["error"]
        assert health["database"]["status"] == "ok"
        for path, body in [("/xgboost/tune/submit", SUBMIT), ("/xgboost/train", TRAIN)]:
            refused = client.post(path, json=body)
            assert refused.status_code == 503, (path, refused.get_json())
            assert "model registry unavailable" in error_of(refused) and "read-only" in error_of(refused)
        assert client.get("/xgboost/tune/jobs").get_json()["total"] == 0  # no job was created
        assert client.post("/mfb/incidents", json=INCIDENT).status_code == 201  # our database alone: fine

    assert client.get("/health").get_json()["status"] == "ok"


# -- PostgreSQL set read-only --------------------------------------------------------------------------
def set_read_only(url: str, on: bool) -> None:
    """`ALTER DATABASE .. SET default_transaction_read_only`, then end its sessions (as a DBA would): the
    pool reconnects into the new default."""
    name = make_url(url).database
    admin = create_engine(normalize_url(postgres_base_url()), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            value = "on" if on else "off"
            connection.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}'))
            connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
    finally:
        admin.dispose()


@pytest.mark.parametrize("sql_backend", ["postgresql"])
def test_a_read_only_postgresql_database_answers_503_and_reads_go_on(app, client, migrated_settings):
    url = migrated_settings.database_url
    assert client.post("/mfb/incidents", json=INCIDENT).status_code == 201
    db = services_of(app).database
    set_read_only(url, True)
    try:
        assert "read-only" in check_database(db, 10)  # the write probe sees it; SELECT 1 alone would not
        health = client.get("/health").get_json()
        assert health["status"] == "degraded" and "our database is read-only" in health["database"]["error"]
        time.sleep(PROBE_TTL_S)  # the guard's last probe (before) has expired
        for path, body in [("/mfb/incidents", INCIDENT), ("/xgboost/tune/submit", SUBMIT)]:
            refused = client.post(path, json=body)
            assert refused.status_code == 503, (path, refused.get_json())
            assert "our database is read-only" in error_of(refused)
        listed = client.get("/mfb/incidents")
        assert listed.status_code == 200 and listed.get_json()["total"] == 1  # reads go on
        assert client.get("/xgboost/tune/jobs").get_json()["total"] == 0
        # a write that reaches the database anyway is the same 503, not a 500
        with pytest.raises(DatabaseUnavailableError, match="read-only"):
            IncidentStore(db).record(**INCIDENT, payload={})
    finally:
        set_read_only(url, False)
    time.sleep(PROBE_TTL_S)
    assert client.post("/mfb/incidents", json=INCIDENT).status_code == 201
    assert client.get("/health").get_json()["database"]["status"] == "ok"


def test_the_mlflow_write_probe_on_a_read_only_postgresql_store(settings):
    with fresh_postgres_database(postgres_base_url()) as url:
        engine = create_engine(normalize_url(url))
        with engine.begin() as connection:  # MLflow's revision table, as MLflow's migrations leave it
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
            connection.execute(text("INSERT INTO alembic_version VALUES ('mlflow_head')"))
        engine.dispose()
        store = settings.replace(tracking_uri=url, registry_uri=url)
        probe_mlflow_write(store)  # takes the write
        set_read_only(url, True)
        with pytest.raises(RegistryUnavailableError, match="read-only transaction") as refused:
            require_writable(store, None)
        assert refused.value.status_code == 503 and "nothing was changed" in refused.value.message
        set_read_only(url, False)


# -- our SQLite database read-only under a running `seedcore up` ------------------------------------------
def test_a_read_only_database_under_a_running_server_is_503_not_a_crash(tmp_path):
    port = free_port()
    db = tmp_path / "data" / "seedcore.db"
    server = start(["up", "--no-mlflow-ui"], tmp_path, port, clean_env(tmp_path, SEEDCORE_PORT=str(port)))
    try:
        health = server.wait_for("/health").json()
        assert health["status"] == "ok", health
        worker = health["model"]["pid"]
        assert requests.post(f"{server.url}/mfb/incidents", json=INCIDENT, timeout=30).status_code == 201

        with immutable(*sqlite_files(db)):  # the WAL index (-shm) is mapped by every connection
            deadline = time.monotonic() + 8  # past the lease renewal of `up` itself (every 5 s)
            while time.monotonic() < deadline:
                health = requests.get(f"{server.url}/health", timeout=30).json()
                assert health["status"] == "degraded" and health["database"]["status"] == "error"
                assert f"our database {db} is read-only" in health["database"]["error"]
                for path, body in [("/mfb/incidents", INCIDENT), ("/xgboost/tune/submit", SUBMIT)]:
                    refused = requests.post(f"{server.url}{path}", json=body, timeout=30)
                    assert refused.status_code == 503, (path, refused.text)
                    assert "read-only" in refused.json()["error"] and "nothing was changed" in refused.json()["error"]
                assert requests.get(f"{server.url}/mfb/incidents", timeout=30).status_code == 503
                time.sleep(1)
            assert server.process.poll() is None
            assert requests.get(f"{server.url}/health", timeout=30).json()["model"]["pid"] == worker  # never died
        assert "SIGBUS" not in server.text()

        assert requests.post(f"{server.url}/mfb/incidents", json=INCIDENT, timeout=30).status_code == 201
        assert requests.get(f"{server.url}/health", timeout=30).json()["status"] == "ok"
        assert requests.get(f"{server.url}/mfb/incidents", timeout=30).json()["total"] == 2
        assert requests.get(f"{server.url}/xgboost/tune/jobs", timeout=30).json()["total"] == 0
        os.killpg(server.sid, signal.SIGINT)
        assert server.process.wait(90) == 0, server.text()[-3000:]
    finally:
        server.stop()


def test_up_refuses_to_start_on_a_read_only_database(tmp_path):
    env = clean_env(tmp_path, SEEDCORE_PORT=str(free_port()), SEEDCORE_MLFLOW_UI_PORT=str(free_port()))
    subprocess.run([str(SEEDCORE), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    db = tmp_path / "data" / "seedcore.db"
    with immutable(db):
        up = subprocess.Popen([str(SEEDCORE), "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
        try:
            out, err = up.communicate(timeout=120)
        finally:
            if up.poll() is None:
                up.kill()
    assert up.returncode == OUR_FAULT, (out, err)
    error = json.loads(err.strip().splitlines()[-1])["error"]
    assert error.startswith(f"not starting: our database {db} is read-only: seedcore.db cannot be written"), error
    assert "MLflow UI" not in out  # refused before anything was started
    assert session_processes(up.pid) == []


def test_restart_after_our_database_was_deleted_says_what_was_left(tmp_path):
    port = free_port()
    env = clean_env(tmp_path, SEEDCORE_PORT=str(port))
    db = tmp_path / "data" / "seedcore.db"
    server = start(["up", "--no-mlflow-ui"], tmp_path, port, env)
    try:
        assert server.wait_for("/health").json()["status"] == "ok"
        assert requests.post(f"{server.url}/mfb/incidents", json=INCIDENT, timeout=30).status_code == 201
        db.unlink()
        health = requests.get(f"{server.url}/health", timeout=30).json()
        assert health["status"] == "degraded" and "is missing" in health["database"]["error"]
        refused = requests.post(f"{server.url}/mfb/incidents", json=INCIDENT, timeout=30)
        assert refused.status_code == 503 and "is missing" in refused.json()["error"]
        os.killpg(server.sid, signal.SIGINT)
        server.process.wait(90)
    finally:
        server.stop()
    assert not db.exists()

    # the WAL the lost file left would be replayed into a new, empty one: refuse, and say so
    again = subprocess.run([str(SEEDCORE), "up", "--no-mlflow-ui"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == OUR_FAULT, again.stderr[-2000:]
    assert f"our database {db} is missing but its seedcore.db-wal is there" in again.stderr
    assert not db.exists()

    for leftover in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        leftover.unlink(missing_ok=True)
    fresh = start(["up", "--no-mlflow-ui"], tmp_path, port, env, name="fresh")
    try:
        assert fresh.wait_for("/health").json()["status"] == "ok"
        assert requests.get(f"{fresh.url}/mfb/incidents", timeout=30).json()["total"] == 0
    finally:
        fresh.stop()


# -- the MLflow UI: a port taken, a failure after start ------------------------------------------------------
def test_up_says_when_the_mlflow_ui_port_is_taken_and_runs_without_it(tmp_path):
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        ui_port = squatter.getsockname()[1]
        server = start(["up"], tmp_path, port,
                       clean_env(tmp_path, SEEDCORE_PORT=str(port), SEEDCORE_MLFLOW_UI_PORT=str(ui_port)))
        try:
            assert server.wait_for("/health").json()["status"] == "ok"
            said = server.text()
            assert (f"MLflow UI not started: 127.0.0.1:{ui_port} cannot be bound (Address already in use; "
                    f"listening: pid {os.getpid()} ") in said, said[-3000:]
            assert "MLflow UI              not started (see above)" in said
            uis = [p for p in session_processes(server.sid) if "mlflow" in " ".join(p.cmdline())]
            assert uis == []
            os.killpg(server.sid, signal.SIGINT)
            assert server.process.wait(90) == 0, server.text()[-3000:]
        finally:
            server.stop()


def test_the_mlflow_ui_says_why_it_stopped_and_leaves_nothing(settings, capfd):
    port = free_port()
    ui = start_mlflow_ui(settings.replace(mlflow_ui_port=port))
    with socket.socket() as squatter:  # taken after the UI was started, before it binds (it takes seconds)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        try:
            ui.wait(timeout=240)
        finally:
            stop_process(ui)
    said = capfd.readouterr().err
    assert f"MLflow UI on 127.0.0.1:{port} exited with code" in said, said[-3000:]
    assert "address already in use" in said.lower()  # uvicorn's words: "[Errno 98] error while attempting to bind"
    group = [p for p in psutil.process_iter(["status"])
             if p.info["status"] != psutil.STATUS_ZOMBIE and _pgid(p.pid) == ui.pid]
    assert group == []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


# -- nothing outlives the server ------------------------------------------------------------------------------
def test_nothing_outlives_a_killed_worker_or_a_killed_server(tmp_path):
    port, ui_port = free_port(), free_port()
    server = start(["up"], tmp_path, port,
                   clean_env(tmp_path, SEEDCORE_PORT=str(port), SEEDCORE_MLFLOW_UI_PORT=str(ui_port)))
    try:
        worker = server.wait_for("/health").json()["model"]["pid"]
        deadline = time.monotonic() + 240
        while "Ray dashboard" not in server.text():  # Ray is up in the worker
            assert time.monotonic() < deadline and server.process.poll() is None, server.text()[-3000:]
            time.sleep(0.5)
        ray = [p for p in session_processes(server.sid) if p.pid != worker and _pgid(p.pid) == worker]
        assert ray, "Ray's processes share the worker's process group"

        os.kill(worker, signal.SIGKILL)  # the worker dies without stopping anything
        gone, alive = psutil.wait_procs(ray, timeout=30)
        assert alive == [], [p.pid for p in alive]
        respawned = server.wait_for("/health").json()["model"]["pid"]
        assert respawned != worker

        deadline = time.monotonic() + 240
        while not any("mlflow" in " ".join(p.cmdline()) and "ui" in p.cmdline()
                      for p in session_processes(server.sid)):
            assert time.monotonic() < deadline, server.text()[-3000:]
            time.sleep(0.5)
        server.remember_processes()
        started = time.monotonic()
        os.kill(server.process.pid, signal.SIGKILL)  # `seedcore up` itself, no chance to clean up
        wait_until_gone(server.sid, started, timeout=90)
    finally:
        server.stop()
