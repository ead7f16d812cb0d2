"""`seedcore history`, `seedcore evolution` and `seedcore evolution baseline` after `seedcore tune --here`, each
called in process through the command's entry point (`seedcore.cli.run`, as `[project.scripts]` installs it): its
settings from the environment, its output and exit code as a shell sees them, its sweeps on the pytest worker's
shared Ray. The command in processes of its own (exit codes, Ctrl-C, its own Ray starting and stopping) is tested
in tests/cli/test_cli.py and tests/cli/test_commands.py."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna  # noqa: F401  (see below)
import pytest
import ray

from _lifecycle import as_fresh_user
from seedcore import cli
from seedcore.promotion import followups

# optuna (the tpe searcher's) adds a stderr handler of its own when first imported, on sys.stderr as it is then:
# imported here, at collection, that is the run's stream, not this test's captured one, closed after the test
# (a later optuna line in this process would fail to print).

pytestmark = pytest.mark.integration
ONE_TRIAL = ["--space-type", "conservative", "--config-type", "conservative",
             "--custom-tune-config", '{"num_samples": 2, "seed": 3, "search_alg": "tpe"}',
             "--experiment-name", "cli_organism", "--here"]


def _exit(code: int):
    """`run()` ends its process at once (`exit_now`: logging.shutdown(), then os._exit): in the pytest process,
    its exit code leaves as SystemExit instead, as argparse's refusals (exit code 2) do."""
    raise SystemExit(code)


@pytest.fixture
def seedcore(settings, ray_session, monkeypatch, capsys):
    """`seedcore ARGS...` in this process as a shell runs it: a CompletedProcess with its exit code and output.
    Its environment is a fresh user's (no SEEDCORE_* of ours, no RAY_ADDRESS: as `clean_env`) naming this test's
    stores."""
    as_fresh_user(monkeypatch, settings.data_dir, settings.mlruns_dir)
    monkeypatch.setattr(cli, "exit_now", _exit)

    def command(args: list[str]) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", ["seedcore", *args])
        with pytest.raises(SystemExit) as exited:  # run() never returns
            cli.run()
        code = exited.value.code  # as a shell sees it: None is 0, a message (printed) is 1
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, 0 if code is None else code if isinstance(code, int) else 1, out, err)

    return command


def test_history_and_evolution_after_a_sweep_run_here(seedcore):
    tuned = seedcore(["tune", *ONE_TRIAL])
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    version = json.loads(tuned.stdout)["model_version"]

    history = seedcore(["history", "--json"])
    assert history.returncode == 0, history.stderr[-2000:]
    item = json.loads(history.stdout)["items"][0]
    assert item["version"] == version and item["trigger"] == "manual"
    assert item["energy"]["cpu_seconds"] > 0 and item["energy"]["joules"] == pytest.approx(item["energy"]["cpu_seconds"] * 3.5)
    table = seedcore(["history"])
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:2] == ["version", "trigger"]

    evolution = seedcore(["evolution", "--json"])
    assert evolution.returncode == 0, evolution.stderr[-2000:]
    sweep = json.loads(evolution.stdout)["sweeps"][0]
    assert sweep["version"] == version and sweep["trials"] == 2 and sweep["warm_start"] == "none"
    assert sweep["smartness_baseline"] == "random_order"

    # no server runs: the baseline runs here, as `tune --here` would, and prints its result
    baseline = seedcore(["evolution", "baseline", sweep["job_id"], "--kind", "random_search"])
    assert baseline.returncode == 0, baseline.stderr[-2000:]
    result = json.loads(baseline.stdout)
    assert result["tune_config"]["search_alg"] == "random" and result["total_trials"] == 2
    assert result["promotion"]["status"] == "skipped" and result["model_version"] == version + 1
    [measured] = json.loads(seedcore(["evolution", "--json"]).stdout)["sweeps"]  # no sweep of its own
    assert measured["job_id"] == sweep["job_id"] and measured["smartness_baseline"] == "random_search"
    assert measured["smartness"] == pytest.approx(measured["curve_area"] - measured["random_search"]["curve_area"])
    refused = seedcore(["evolution", "baseline", sweep["job_id"], "--kind", "cold_start"])
    assert refused.returncode == 2 and json.loads(refused.stderr.splitlines()[-1])["field"] == "kind"

    refused = seedcore(["history", "--limit", "0"])
    assert refused.returncode != 0 and json.loads(refused.stderr.splitlines()[-1])["field"] == "limit"

    # both sweeps joined the worker's Ray and left it running for the worker's next tests; their follow-ups (which
    # the command's own process leaves behind at its exit) end before the test does
    assert ray.is_initialized() and ray.get(ray.remote(lambda: 1).remote()) == 1
    for answer in (json.loads(tuned.stdout), result):
        followups.wait(answer["mlflow"]["parent_run_id"], 120)
