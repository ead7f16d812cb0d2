"""`seedcore history`, `seedcore evolution` and `seedcore evolution baseline` after `seedcore tune --here`, as a
user runs them (processes)."""

from __future__ import annotations

import json
import subprocess

import pytest

from _lifecycle import SEEDCORE, clean_env

pytestmark = pytest.mark.e2e
ONE_TRIAL = ["--space-type", "conservative", "--config-type", "conservative",
             "--custom-tune-config", '{"num_samples": 2, "seed": 3, "search_alg": "tpe"}',
             "--experiment-name", "cli_organism", "--here"]


def _seedcore(args: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(SEEDCORE), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_history_and_evolution_after_a_sweep_run_here(tmp_path):
    env = clean_env(tmp_path)
    tuned = _seedcore(["tune", *ONE_TRIAL], env)
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    version = json.loads(tuned.stdout)["model_version"]

    history = _seedcore(["history", "--json"], env)
    assert history.returncode == 0, history.stderr[-2000:]
    item = json.loads(history.stdout)["items"][0]
    assert item["version"] == version and item["trigger"] == "manual"
    assert item["energy"]["cpu_seconds"] > 0 and item["energy"]["joules"] == pytest.approx(item["energy"]["cpu_seconds"] * 3.5)
    table = _seedcore(["history"], env)
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:2] == ["version", "trigger"]

    evolution = _seedcore(["evolution", "--json"], env)
    assert evolution.returncode == 0, evolution.stderr[-2000:]
    sweep = json.loads(evolution.stdout)["sweeps"][0]
    assert sweep["version"] == version and sweep["trials"] == 2 and sweep["warm_start"] == "none"
    assert sweep["smartness_baseline"] == "random_order"

    # no server runs: the baseline runs here, as `tune --here` would, and prints its result
    baseline = _seedcore(["evolution", "baseline", sweep["job_id"], "--kind", "random_search"], env)
    assert baseline.returncode == 0, baseline.stderr[-2000:]
    result = json.loads(baseline.stdout)
    assert result["tune_config"]["search_alg"] == "random" and result["total_trials"] == 2
    assert result["promotion"]["status"] == "skipped" and result["model_version"] == version + 1
    [measured] = json.loads(_seedcore(["evolution", "--json"], env).stdout)["sweeps"]  # no sweep of its own
    assert measured["job_id"] == sweep["job_id"] and measured["smartness_baseline"] == "random_search"
    assert measured["smartness"] == pytest.approx(measured["curve_area"] - measured["random_search"]["curve_area"])
    refused = _seedcore(["evolution", "baseline", sweep["job_id"], "--kind", "cold_start"], env)
    assert refused.returncode == 2 and json.loads(refused.stderr.splitlines()[-1])["field"] == "kind"

    refused = _seedcore(["history", "--limit", "0"], env)
    assert refused.returncode != 0 and json.loads(refused.stderr.splitlines()[-1])["field"] == "limit"
