"""The `seedcore` command: tune (as a user runs it, in its own process), promote, db."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sqlalchemy import create_engine, inspect, text

from _lifecycle import NO_RAY_DASHBOARD, settings_env
from _tuning import job_rows, mlflow_client, production_version, wait_for
from seedcore import names
from seedcore.cli import main
from seedcore.datasets import load_dataset
from seedcore.db.database import Database
from seedcore.db.migrations import head_revision
from seedcore.memory.store import IncidentStore
from seedcore.promotion.registry import configure_mlflow
from seedcore.tuning.single import train_model

pytestmark = pytest.mark.e2e

SEEDCORE = Path(sys.executable).parent / "seedcore"
GOOD_PARAMS = {"eta": 0.2, "max_depth": 4, "num_boost_round": 40}
WEAK_PARAMS = {"eta": 0.01, "max_depth": 1, "num_boost_round": 1}
OUR_TABLES = {"flashbulb_incidents", "tuning_jobs"}


@pytest.fixture
def cli_env(monkeypatch):
    """Point the command at a test's settings through the environment, as a user would."""
    def point_at(settings):
        for key in [k for k in os.environ if k.startswith("SEEDCORE_")]:
            monkeypatch.delenv(key)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        monkeypatch.setenv("SEEDCORE_DATA_DIR", str(settings.data_dir))
        monkeypatch.setenv("SEEDCORE_MLRUNS_DIR", str(settings.mlruns_dir))
        return settings
    return point_at


def _incidents(settings, event_type: str) -> list[dict]:
    db = Database(settings.database_url)
    try:
        return IncidentStore(db).query(event_type=event_type)["items"]
    finally:
        db.dispose()


def test_tune_command_shows_progress_prints_the_result_and_promotes(settings):
    """`seedcore tune` in its own process (it ends its Ray session when done), as a user runs it."""
    command = [str(SEEDCORE), "tune", "--space", "conservative", "--config", "conservative",
               "--experiment-name", "cli_sweep"]
    done = subprocess.run(command, env=settings_env(settings, **NO_RAY_DASHBOARD), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]

    progress = [(int(m[1]), int(m[2])) for m in re.finditer(r"trials (\d+)/(\d+)", done.stderr)]
    assert progress and progress[-1] == (5, 5), done.stderr[-2000:]
    assert {total for _, total in progress} == {5}
    assert [n for n, _ in progress] == sorted(n for n, _ in progress)
    result = json.loads(done.stdout)  # stdout is the result and nothing else
    assert result["status"] == "success" and result["experiment_name"] == "cli_sweep"
    assert result["total_trials"] == 5 and result["promotion"]["status"] == "success"

    # MLflow: one parent and five nested children, all ended, with per-round curves
    client = mlflow_client(settings)
    experiment = client.get_experiment_by_name("cli_sweep")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if names.TAG_PARENT_RUN not in run.data.tags]
    children = [run for run in runs if names.TAG_PARENT_RUN in run.data.tags]
    assert len(parents) == 1 and len(children) == 5
    assert parents[0].info.run_id == result["mlflow"]["parent_run_id"]
    assert all(run.data.tags[names.TAG_PARENT_RUN] == parents[0].info.run_id for run in children)
    assert parents[0].info.status == "FINISHED" and all(run.info.status != "RUNNING" for run in children)
    curves = {run.info.run_id: sorted(m.step for m in client.get_metric_history(run.info.run_id, names.AUC))
              for run in children}
    assert all(steps == list(range(1, len(steps) + 1)) and len(steps) >= 5 for steps in curves.values()), curves
    assert max(len(steps) for steps in curves.values()) >= 10

    # the registry: the winner's version carries alias production and stage Production
    version = result["model_version"]
    mv = client.get_model_version(settings.model_name, str(version))
    assert names.PRODUCTION_ALIAS in mv.aliases and mv.current_stage == names.PRODUCTION_STAGE

    # the blessed file predicts exactly what the registry's production model predicts
    blessed = xgb.Booster()
    blessed.load_model(bytearray((settings.blessed_dir / names.BLESSED_MODEL_FILE).read_bytes()))
    dataset = load_dataset(settings.data_dir)
    frame = pd.DataFrame(dataset.x_holdout, columns=list(dataset.feature_names))
    configure_mlflow(settings)
    served = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@{names.PRODUCTION_ALIAS}")
    expected = np.asarray(served.predict(frame))
    got = blessed.predict(xgb.DMatrix(dataset.x_holdout, feature_names=list(dataset.feature_names)))
    assert expected.shape == got.shape == (len(dataset.y_holdout),)
    assert np.array_equal(expected, got)

    # our SQL: the job and the incidents
    (job,) = job_rows(settings)
    assert job["state"] == "succeeded" and job["result"]["model_version"] == version
    assert len(_incidents(settings, "model_tuning_completed")) == 1
    assert [i["model_version"] for i in _incidents(settings, "model_promoted")] == [str(version)]


def _lines(stream, into: "queue.Queue[str]") -> None:
    for line in stream:
        into.put(line)


@pytest.mark.parametrize("sql_backend", ["postgresql"])
def test_tune_here_prints_its_answer_before_its_followups_end(migrated_settings):
    """`seedcore tune --here` prints the sweep's answer as soon as it exists, then finishes its follow-ups (saying so
    on stderr) before it exits, with the answer's exit code. A lock on the drift references' table holds the
    follow-ups back (nothing before the answer touches that table) for longer than the answer may take."""
    settings = migrated_settings
    env = {**settings_env(settings, **NO_RAY_DASHBOARD), "SEEDCORE_DATABASE_URL": settings.database_url,
           "SEEDCORE_STOP_TIMEOUT_S": "600"}
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as lock:
            lock.execute(text("LOCK TABLE drift_references IN ACCESS EXCLUSIVE MODE"))  # until the rollback
            cli = subprocess.Popen([str(SEEDCORE), "tune", "--here", "--custom-config", '{"num_samples": 2}',
                                    "--experiment-name", "answer_first"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            out: "queue.Queue[str]" = queue.Queue()
            errors: "queue.Queue[str]" = queue.Queue()  # read as it comes: a full pipe would stop the command
            readers = [threading.Thread(target=_lines, args=pair, daemon=True)
                       for pair in ((cli.stdout, out), (cli.stderr, errors))]
            for reader in readers:
                reader.start()
            try:
                ended = wait_for(lambda: [j for j in job_rows(settings) if j["state"] != "running"]
                                 or cli.poll() is not None, 600, "the job to end", interval=0.5)
                assert ended is not True, "the command ended first: " + "".join(errors.queue)[-4000:]
                assert ended[0]["state"] == "succeeded", ended[0]["error"]
                answer = [out.get(timeout=60)]  # well inside the 600 s the follow-ups may take
                while answer[-1] != "}\n":  # the answer: indented JSON, its last line a lone brace
                    answer.append(out.get(timeout=60))
                result = json.loads("".join(answer))
                assert cli.poll() is None  # still running: its follow-ups wait for the lock
                (job,) = job_rows(settings)
                assert job["result"]["model_version"] == result["model_version"]
                assert job["result"]["followups"]["drift_reference"] == "pending"
            except BaseException:
                cli.kill()
                raise
            lock.rollback()
        cli.wait(timeout=300)
        for reader in readers:
            reader.join(30)  # to the end of both streams
    finally:
        engine.dispose()
    err = "".join(errors.queue)
    assert cli.returncode == 0, err[-4000:]
    assert "finishing the follow-ups (model_card, drift_reference, plots) before exiting" in err
    assert "follow-ups: model_card done, drift_reference done, plots done" in err
    assert out.empty()  # stdout is the answer and nothing else
    (job,) = job_rows(settings)
    assert job["result"]["followups"] == {"model_card": "done", "drift_reference": "done", "plots": "done"}


def _runner_threads() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.name.startswith("seedcore-runner")}


@pytest.mark.parametrize(("argv", "field"), [
    (["--custom-config", '{"num_samples": 100000}'], "custom_tune_config.num_samples"),
    (["--custom-config", '{"time_budget_s": 1e9}'], "custom_tune_config.time_budget_s"),
    (["--custom-space", '{"eta": {"type": "uniform", "lower": 0.3, "upper": 0.1}}'], "custom_search_space.eta.lower"),
    (["--data", "../elsewhere.csv", "--label-column", "y"], "data_source"),
    (["--data", "/etc/passwd", "--label-column", "y"], "data_source"),
])
def test_tune_command_refuses_bad_input_before_starting_anything(settings, cli_env, capsys, argv, field):
    import ray

    cli_env(settings)
    ray_was_running, threads_before = ray.is_initialized(), _runner_threads()
    assert main(["tune", "--experiment-name", "refused", *argv]) == 2
    error = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert error["status"] == "error" and error["field"] == field
    assert job_rows(settings) == []
    assert _runner_threads() == threads_before  # no runner left behind
    assert ray.is_initialized() == ray_was_running  # Ray was not started for a refused request


def test_promote_command_goes_through_the_champion_gate(migrated_settings, cli_env, capsys):
    settings = cli_env(migrated_settings)
    assert train_model(settings, GOOD_PARAMS)["model_version"] == 1
    assert train_model(settings, WEAK_PARAMS)["model_version"] == 2

    assert main(["promote", "--version", "1"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["status"] == "success" and first["version"] == 1 and production_version(settings) == 1
    blessed = (settings.blessed_dir / names.BLESSED_MODEL_FILE).read_bytes()

    assert main(["promote", "--version", "2"]) == 3
    rejected = json.loads(capsys.readouterr().out)
    challenger, champion = rejected["challenger"]["auc"], rejected["champion"]["auc"]
    assert rejected["status"] == "rejected" and challenger < champion
    assert f"{challenger:.6f}" in rejected["reason"] and f"{champion:.6f}" in rejected["reason"]
    assert production_version(settings) == 1
    assert (settings.blessed_dir / names.BLESSED_MODEL_FILE).read_bytes() == blessed

    assert main(["promote", "--version", "2", "--force"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "success" and production_version(settings) == 2

    assert main(["promote", "--version", "99"]) == 2
    error = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert error["status"] == "error" and error["field"] == "version"

    assert sorted(i["model_version"] for i in _incidents(settings, "model_promoted")) == ["1", "2"]
    assert [i["model_version"] for i in _incidents(settings, "model_promotion_rejected")] == ["2"]


def test_db_commands_upgrade_current_and_downgrade(settings, cli_env, capsys):
    cli_env(settings)
    head = head_revision()

    def tables() -> set[str]:
        engine = create_engine(settings.database_url)
        try:
            return set(inspect(engine).get_table_names()) & OUR_TABLES
        finally:
            engine.dispose()

    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.split() == ["current:", "base", "head:", head]

    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.startswith(f"database at revision {head} (sqlite:///")
    assert tables() == OUR_TABLES
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.split() == ["current:", head, "head:", head]

    assert main(["db", "downgrade", "base"]) == 0
    assert capsys.readouterr().out.strip() == "database at revision base"
    assert tables() == set()
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.split() == ["current:", "base", "head:", head]

    assert main(["db", "upgrade"]) == 0
    assert tables() == OUR_TABLES


@pytest.mark.parametrize("module", ["seedcore", "seedcore.cli"])
def test_python_dash_m_runs_the_command(module):
    """`python -m seedcore` (and `python -m seedcore.cli`) is the `seedcore` command, as `python -m mlflow` is."""
    done = subprocess.run([sys.executable, "-m", module, "db", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: seedcore db"), done.stdout[:300]
