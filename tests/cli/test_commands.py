"""The `seedcore` command line: every --help runs and lists only real commands, exit codes documented,
tune/train options derived from the request models, `train`, `jobs` and `models`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

import pytest

from _lifecycle import settings_env
from _tuning import job_rows
from seedcore.cli import build_parser, main
from seedcore.cli.common import READER_GONE
from seedcore.db.database import Database
from seedcore.jobs.store import JobStore
from seedcore.request_models import TrainRequest, TuneRequest

pytestmark = pytest.mark.e2e

TINY = {"eta": 0.3, "max_depth": 2, "num_boost_round": 5}


def _commands(parser: argparse.ArgumentParser, prefix=()) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command and nested action, with its parser."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.append(((*prefix, name), child))
                found += _commands(child, (*prefix, name))
    return found


def _runs(parser: argparse.ArgumentParser) -> bool:
    """A command a user can run: it has a handler or only subcommands that do."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser.get_default("handler") is not None if not nested else all(
        _runs(child) for a in nested for child in a.choices.values())


def test_every_help_runs_and_every_listed_command_exists(capsys):
    commands = _commands(build_parser())
    names = {path[0] for path, _ in commands}
    assert {"up", "serve", "tune", "train", "promote", "jobs", "models", "db", "ray"} <= names
    assert all(_runs(child) for _, child in commands), [p for p, c in commands if not _runs(c)]
    for path, _ in [((), None), *commands]:
        with pytest.raises(SystemExit) as done:
            main([*path, "--help"])
        assert done.value.code == 0, path
        assert "usage: seedcore" in capsys.readouterr().out
    main_help = build_parser().format_help()
    for code in ("0", "1", "2", "3", "130"):
        assert f"\n  {code} " in main_help
    for command in ("up", "serve"):
        usage = dict(commands)[(command,)].format_help()
        assert "--host" in usage and "--port" in usage


@pytest.mark.parametrize(("command", "model"), [("tune", TuneRequest), ("train", TrainRequest)])
def test_request_options_come_from_the_request_model(command, model):
    usage = dict(_commands(build_parser()))[(command,)].format_help()
    for name, field in model.model_fields.items():
        flag = name.replace("_", "-")
        assert f"--{flag}" in usage or f"--no-{flag}" in usage, name


def test_train_command_runs_a_job_claimed_by_the_cli_and_prints_its_result(settings, monkeypatch, capsys):
    for key, value in {"SEEDCORE_DATA_DIR": settings.data_dir, "SEEDCORE_MLRUNS_DIR": settings.mlruns_dir}.items():
        monkeypatch.setenv(key, str(value))
    assert main(["train", "--params", json.dumps(TINY), "--experiment-name", "from_cli"]) == 0
    printed = capsys.readouterr()
    result = json.loads(printed.out)
    assert result["model_version"] == 1 and result["experiment_name"] == "from_cli"
    (job,) = job_rows(settings)
    assert (job["kind"], job["trigger"], job["state"]) == ("train", "manual", "succeeded")
    # the progress line says the training ran, with its validation AUC (not "trials 0/1")
    assert (job["trials_done"], job["trials_total"]) == (1, 1) and job["best_auc"] == result["validation"]["auc"]
    assert f"[succeeded] trials 1/1  best AUC {result['validation']['auc']:.4f}" in printed.err, printed.err

    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["version", "aliases", "stage"] and table[1].split()[0] == "1"
    assert main(["models", "show", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 1 and shown["hyperparameters"]["max_depth"] == 2
    assert main(["models", "show", "7"]) == 2
    assert json.loads(capsys.readouterr().err.splitlines()[-1])["field"] == "version"


def test_jobs_commands_list_show_and_cancel(migrated_settings, monkeypatch, capsys):
    settings = migrated_settings
    for key, value in {"SEEDCORE_DATA_DIR": settings.data_dir, "SEEDCORE_MLRUNS_DIR": settings.mlruns_dir}.items():
        monkeypatch.setenv(key, str(value))
    db = Database(settings.database_url)
    job = JobStore(db).create({"space_type": "conservative"}, "queued_one", 5, trigger="schedule:7")
    db.dispose()

    assert main(["jobs", "list"]) == 0
    listing = capsys.readouterr().out
    assert job["id"] in listing and "schedule:7" in listing and "queued" in listing
    assert main(["jobs", "list", "--json", "--state", "queued"]) == 0
    assert [j["id"] for j in json.loads(capsys.readouterr().out)["items"]] == [job["id"]]
    assert main(["jobs", "cancel", job["id"]]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main(["jobs", "show", job["id"]]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "cancelled"
    assert main(["jobs", "show", "no-such-job"]) == 2
    assert json.loads(capsys.readouterr().err.splitlines()[-1])["field"] == "job_id"


def test_a_reader_that_leaves_before_the_output_ends_the_command_quietly(migrated_settings):
    """`seedcore jobs list | head`: the pipe's reader is gone when the command prints. It exits READER_GONE (as a
    shell tool that SIGPIPE ends) with nothing on stderr, not a BrokenPipeError traceback."""
    process = subprocess.Popen([sys.executable, "-m", "seedcore.cli", "jobs", "list", "--json"],
                               env=settings_env(migrated_settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader leaves at once: the command is still importing
    stderr = process.stderr.read().decode()
    assert process.wait(60) == READER_GONE and stderr == "", stderr


@pytest.mark.parametrize("why, state", [(RuntimeError("no raylet"), "failed"), (KeyboardInterrupt(), "cancelled")])
def test_a_sweep_whose_ray_never_started_ends_its_job(migrated_settings, why, state):
    """`seedcore tune --here` creates its job (checked, claimed) before Ray starts; if Ray fails (or Ctrl-C),
    the job ends then, not at the next start's recovery."""
    from seedcore.cli.tune_train import _end_unstarted
    from seedcore.jobs.runner import JobRunner

    runner = JobRunner(migrated_settings, Database(migrated_settings.database_url))
    request = TuneRequest(experiment_name="never_started", custom_tune_config={"num_samples": 1})
    job = runner.submit(request, claim=True)
    _end_unstarted(runner, job, why)
    (row,) = job_rows(migrated_settings)
    assert row["state"] == state and row["experiment_name"] == "never_started"
    assert ("no raylet" in row["error"]) if state == "failed" else row["error"] == "interrupted while Ray started"


# A fresh process: the Ray session it starts is its own to shut down (the test run shares one otherwise).
_ONE_SWEEP_SESSION = textwrap.dedent("""
    import json, sys, time
    import ray
    from seedcore.config import Settings
    from seedcore.tuning import cluster, sweep, winner

    settings = Settings(data_dir=sys.argv[1], mlruns_dir=sys.argv[2])
    settings.ensure_dirs()
    assert cluster.ensure_ray(settings)
    cluster.end_after_trials()  # what `seedcore tune` does with a Ray it started
    seen = {}
    final_booster = winner.final_booster

    def after_the_trials(*args, **kwargs):  # the winner's model is read and registered once Ray has ended
        deadline = time.monotonic() + 120  # the sweep goes on while Tune ends; then Ray's shutdown starts itself
        while cluster._STATE["ending"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["ending_started"] = cluster._STATE["ending"] is not None
        cluster._STATE["ending"].join()
        seen["ray_up"] = ray.is_initialized()
        return final_booster(*args, **kwargs)

    winner.final_booster = after_the_trials
    result = sweep.run_sweep(settings, space_type="conservative", config_type="conservative", refit=False,
                             promote=False, custom_tune_config={"num_samples": 2})
    cluster.shutdown_ray()
    print(json.dumps({**seen, "version": result["model_version"], "refit": result["refit"]["enabled"],
                      "ray_up_at_exit": ray.is_initialized()}))
""")


def test_a_ray_started_for_one_sweep_ends_with_its_trials(settings):
    """The command line's own Ray shuts down (in the background) once Tune has ended after the trials, which
    the sweep does not wait for: the winner's checkpoint is read and registered without Ray, and
    shutdown_ray then has nothing left to wait for."""
    done = subprocess.run([sys.executable, "-c", _ONE_SWEEP_SESSION, str(settings.data_dir), str(settings.mlruns_dir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"ending_started": True, "ray_up": False, "version": 1, "refit": False, "ray_up_at_exit": False}
