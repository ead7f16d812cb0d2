"""Benchmark 6, a cold sweep from the command line vs Optuna scripts, each in a fresh process.

The same 50 trials of the guide's default space on the built-in data (2,000 rows). **Ours**:
`seedcore tune` (Ray started by the command, a fresh MLflow store, the winner refit and registered).
**Optuna**: `python -m bench._optuna_bare` (TPE, every trial in full, no tracking), and the nested-runs
peer (`bench._optuna_peer`: a parent run, a nested run per trial, a metric write per round), each a new
process too. Wall time from spawn to exit. A profile of our cold sweep follows (bench._cold_profile).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from bench._datasets import dataset_csv
from bench._report import Section, log
from bench._workspace import Workspace
from ray.tune.search.sample import Float, Integer
from seedcore.tuning.spaces import DEFAULT_SPACE, NUM_BOOST_ROUND

NAME = "cold"
TITLE = "6. Cold sweep from the CLI (50 trials, default space, built-in data, fresh processes)"
ROOT = Path(__file__).resolve().parents[1]
SETTLE_S = 20  # a running server's warm-up (Ray start, sweep imports) before the timed CLI runs


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    trials = 3 if small else 50
    repeats = repeats or (1 if small else 3)
    csv = dataset_csv(ws, "builtin")
    ours, bare, nested, profiles = [], [], [], []
    served = [took for took, _ in _ours_beside_server(ws, csv, trials, range(repeats),
                                                        settle_s=0 if small else SETTLE_S)]
    for r in range(repeats):
        ours.append(_ours_cli(ws, csv, trials, r))
        bare.append(_timed([sys.executable, "-m", "bench._optuna_bare", str(csv), str(trials), str(r)])[0])
        if r == 0:  # one run: it is many times slower and its ratio is far from the bound
            nested.append(_nested(ws, csv, trials, r))
        log(f"{NAME}: repeat {r}: ours CLI {ours[-1]:.1f} s, bare Optuna {bare[-1]:.1f} s")
    directory = _data_dir(ws, csv, "cold_profile")
    seconds, out = _timed([sys.executable, "-m", "bench._cold_profile", csv.name, str(trials), "0"], env=_env(directory))
    profiles.append({"process wall": seconds, **json.loads(out.strip().splitlines()[-1])})
    return _section(ours, bare, nested, served, profiles[0], trials, repeats)


def _env(ws_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEEDCORE_", "RAY_ADDRESS"))}
    env.update({"SEEDCORE_DATA_DIR": str(ws_dir / "data"), "SEEDCORE_MLRUNS_DIR": str(ws_dir / "mlruns"),
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    return env


def _data_dir(ws: Workspace, csv: Path, name: str) -> Path:
    """A new directory whose data dir holds the CSV; our processes keep their stores inside it."""
    directory = ws.new_dir(name)
    (directory / "data").mkdir()
    os.link(csv, directory / "data" / csv.name)
    return directory


def _timed(cmd: list[str], env: dict | None = None, timeout: float = 3600) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, done.stdout


def _tune_command(csv: Path, trials: int, seed: int, rounds: int | None = None) -> list[str]:
    """`seedcore tune` of the default space and config; `rounds` other than the space's as a custom space."""
    seedcore = str(Path(sys.executable).with_name("seedcore"))
    space = [] if rounds in (None, DEFAULT_SPACE[NUM_BOOST_ROUND]) else ["--custom-space", json.dumps(
        {**{key: _spec(domain) for key, domain in DEFAULT_SPACE.items()}, NUM_BOOST_ROUND: rounds})]
    return [seedcore, "tune", "--space", "default", "--config", "default", "--data", csv.name, "--label-column",
            "target", "--no-promote", "--custom-config", json.dumps({"num_samples": trials, "seed": seed}), *space]


def _spec(domain):
    """A Ray Tune domain (or constant) of the default space in the request's dictionary form."""
    if isinstance(domain, Float):
        kind = "loguniform" if isinstance(domain.get_sampler(), Float._LogUniform) else "uniform"
        return {"type": kind, "lower": domain.lower, "upper": domain.upper}
    if isinstance(domain, Integer):
        return {"type": "randint", "lower": domain.lower, "upper": domain.upper}
    return domain


def _ours_cli(ws: Workspace, csv: Path, trials: int, seed: int) -> float:
    directory = _data_dir(ws, csv, f"cold_cli_{seed}")
    return _timed(_tune_command(csv, trials, seed), env=_env(directory))[0]


def _ours_beside_server(ws: Workspace, csv: Path, trials: int, seeds, settle_s: float,
                        rounds: int | None = None, timeout: float = 3600) -> list[tuple[float, str]]:
    """The same command, fresh processes, beside a running `seedcore up` that shares its database: the CLI
    hands each sweep to the server. The server is started first and given `settle_s` to finish warming up
    (Ray, imports), as a server that has been running would have; its start is not timed. One (seconds,
    the command's output) per seed."""
    from bench._ports import free_port
    from bench._serving import request, wait_until, _base_env, _spawn

    directory = _data_dir(ws, csv, "cold_server")
    port = free_port()
    env = {**_env(directory), "SEEDCORE_HOST": "127.0.0.1", "SEEDCORE_PORT": str(port),
           "SEEDCORE_RAY_DASHBOARD_PORT": "0", "PATH": _base_env()["PATH"]}
    server = _spawn("up", [sys.executable, "-m", "seedcore.cli", "up", "--no-mlflow-ui"], env, port, directory)
    try:
        # the CLI hands a sweep over only to a server whose job runner is alive (seedcore.runtime.discovery)
        wait_until(server, lambda: _runner_alive(*request(port, "GET", "/health")))
        time.sleep(settle_s)
        runs = []
        for seed in seeds:
            runs.append(_timed(_tune_command(csv, trials, seed, rounds), env=env, timeout=timeout))
            log(f"{csv.name}: seed {seed}: ours CLI beside a running server {runs[-1][0]:.1f} s")
        if _handed(directory, server.process.pid) != len(runs):
            raise RuntimeError("the CLI did not hand its sweeps to the running server")
        return runs
    finally:
        server.stop()


def _runner_alive(status: int, health: dict) -> bool:
    return status == 200 and bool((health.get("runner") or {}).get("alive"))


def _handed(directory: Path, server_pid: int) -> int:
    """How many sweeps the server's own processes ran (a CLI that ran its sweep itself owns its job)."""
    import sqlite3

    import psutil

    server = {server_pid, *(p.pid for p in psutil.Process(server_pid).children(recursive=True))}
    with sqlite3.connect(directory / "data" / "seedcore.db") as db:
        owners = db.execute("select owner_pid from tuning_jobs where state = 'succeeded'").fetchall()
    return sum(1 for (pid,) in owners if pid in server)


def _nested(ws: Workspace, csv: Path, trials: int, seed: int) -> float:
    _, uri = ws.fresh_store(f"cold_nested_{seed}")
    code = ("import sys; from pathlib import Path; from bench._optuna_peer import optuna_sweep; "
            "from seedcore.tuning.spaces import resolve_space; "
            f"optuna_sweep(Path({str(csv)!r}), resolve_space('default', None), {trials}, {uri!r}, 'cold', seed={seed})")
    return _timed([sys.executable, "-c", code])[0]


def _section(ours, bare, nested, served, profile, trials: int, repeats: int) -> Section:
    setup = (f"{trials} trials of the guide's default space (200 rounds) on the built-in data at 2,000 rows, each "
             "contender a fresh process, wall time from spawn to exit. **Ours**: `seedcore tune --space default "
             "--config default --no-promote` (starts Ray, migrates our SQL schema, fresh MLflow SQLite store, TPE + "
             "ASHA, refit, register). **Optuna**: `python -m bench._optuna_bare` (TPE, all trials in full, nthread=1, "
             "no tracking); **Optuna + nested MLflow runs**: `bench._optuna_peer` (a metric write per round).")
    section = Section(NAME, TITLE, setup)
    section.add(f"wall time, {trials} trials, cold", median(ours), median(bare), "bare Optuna TPE script", "<= 1", "s")
    section.add(f"wall time, {trials} trials, beside a running server", median(served), median(bare),
                "bare Optuna TPE script", "<= 0.5", "s")
    if nested:
        section.add(f"wall time, {trials} trials, cold", median(ours), median(nested), "Optuna + nested MLflow runs",
                    "<= 0.25", "s")
    section.notes.append(f"medians of {repeats} run(s) (nested-runs peer: 1 run); ours per run: "
                         + ", ".join(f"{s:.1f}" for s in ours) + " s; bare Optuna: " + ", ".join(f"{s:.1f}" for s in bare) + " s")
    section.notes.append("beside a running server: `seedcore up --no-mlflow-ui` sharing the database, started "
                         f"before and given {SETTLE_S} s to warm up; the CLI hands each sweep to it over REST and "
                         "follows it; per run: " + ", ".join(f"{s:.1f}" for s in served) + " s")
    inside = profile.pop("inside the process, in all")
    wall = profile.pop("process wall")
    section.notes.append(f"profile of one cold run (ours, in-process `run_sweep`): process start + interpreter "
                         f"{wall - inside:.2f} s; " + "; ".join(f"{k} {v:.2f} s" for k, v in profile.items()))
    return section
