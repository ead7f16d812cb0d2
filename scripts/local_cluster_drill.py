"""`scripts/local-cluster drill [--short] [--rounds N]`: each fault against a running sweep of a cluster that is up.

Faults: Ray node 2 SIGKILLed (then started again), the API SIGKILLed mid-sweep and started again (the job
must resume), the tracking server down for 30 s, PostgreSQL crashed and started again, Ray node 2 cut from the
head for 20 s. Each round submits a sweep over REST, waits until trials are running, injects the fault,
waits for the job to end, then counts the sweep's trial runs in MLflow. One table row per round: fault,
requested (trials), recorded (trial runs in MLflow), duplicates (runs beyond one per trial, and runs whose
curve holds a round twice), outcome (the job's state), recovery_s (from the fault's end until the sweep made progress again); then a summary line.
A round passes when its job succeeded with every trial recorded once and none failed (a trial failing is
shown in the outcome column).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

DATA = "drill.csv"
TAG_PARENT, TAG_TRIAL = "mlflow.parentRunId", "seedcore.trial_id"
CURVE_METRIC = "auc"  # a trial run's validation AUC, one value a boosting round (step = the round)


def run(args, script: Path, endpoints: dict[str, str], start_stopped) -> int:
    """`start_stopped()` starts any part a fault left stopped (a Ray node that gave up restarting on a busy
    machine) and waits until it answers: each round begins with the whole cluster up."""
    state = args.state
    _write_data(state / "api" / DATA)
    trials = 4 if args.short else 6
    faults = [("ray-node2 kill -9", _node_kill), ("api kill -9 + restart", _api_kill),
              ("mlflow down 30s", _mlflow_down), ("postgres restart", _postgres_restart),
              ("partition ray-node2/ray-head 20s", _partition)]
    rows = []
    for round_ in range(1 if args.short else args.rounds):
        for fault, inject in faults:
            start_stopped()
            rows.append(_round(state, script, endpoints, fault, inject, trials, round_))
            print(_format([rows[-1]], header=len(rows) == 1), flush=True)
    passed = sum(1 for row in rows if _passed(row))
    print(f"drill: {passed}/{len(rows)} rounds passed (job succeeded, every trial recorded once, none failed); "
          f"max recovery {max((r['recovery_s'] for r in rows if r['recovery_s'] is not None), default=0):.1f} s",
          flush=True)
    return 0 if passed == len(rows) else 1


def _round(state: Path, script: Path, endpoints: dict, fault: str, inject, trials: int, round_: int) -> dict:
    api = endpoints["API"]
    name = f"drill_{fault.split()[0].replace('-', '_')}_{round_}_{int(time.time())}"
    request = {"config_type": "conservative", "experiment_name": name, "data_source": DATA, "label_column": "target",
               "custom_search_space": {"eta": {"type": "loguniform", "lower": 0.02, "upper": 0.1}, "max_depth": 6,
                                       "num_boost_round": 600},
               "custom_tune_config": {"num_samples": trials, "max_concurrent_trials": 2, "seed": round_ + 1,
                                      "grace_period": 600}}
    status, job = _call("POST", f"{api}/xgboost/tune/submit", request)
    if status != 202:
        return {"fault": fault, "requested": trials, "recorded": 0, "duplicates": 0,
                "outcome": f"refused {status}", "recovery_s": None}
    url = f"{api}/xgboost/tune/status/{job['job_id']}"
    _wait(lambda: (_progress(url) or {}).get("trials_done", 0) >= 1, 300)  # trials run on both nodes now
    done_before = (_progress(url) or {}).get("trials_done", 0)
    fault_over = inject(state, script, endpoints, url)
    if inject is _api_kill:  # work resumed: the new process took the job over and restored its sweep
        recovery = _wait(lambda: _resumed(endpoints["MLFLOW"], job["job_id"]), 600)
    else:  # the sweep went on: another trial ended, or the job did
        recovery = _wait(lambda: _moved_on(url, done_before), 600)
    final = _wait(lambda: (p := _status(url)) and p["state"] not in ("queued", "running") and p, 900)
    recorded, duplicates, errored = _runs(endpoints["MLFLOW"], job["job_id"])
    outcome = final["state"] if final else "timeout"
    return {"fault": fault, "requested": trials, "recorded": recorded, "duplicates": duplicates,
            "outcome": f"{outcome} ({errored} trial(s) failed)" if errored else outcome,
            "recovery_s": round(recovery - fault_over, 1) if recovery else None,
            "error": (final or {}).get("error")}


# -- the faults: each returns the monotonic time its fault ended ---------------------------------
def _node_kill(state, script, endpoints, url) -> float:
    _cli(script, state, "stop", "ray-node2", "--kill")
    ended = time.monotonic()
    _cli(script, state, "start", "ray-node2", "--no-wait")  # back for the next rounds; this one goes on without it
    return ended


def _api_kill(state, script, endpoints, url) -> float:
    _cli(script, state, "stop", "api", "--kill")
    _cli(script, state, "start", "api")
    _wait(lambda: _call("GET", f"{endpoints['API']}/health", timeout=5)[0] == 200, 300)
    return time.monotonic()  # from the new process answering /health


def _mlflow_down(state, script, endpoints, url) -> float:
    _cli(script, state, "stop", "mlflow", "--kill")
    time.sleep(30)
    _cli(script, state, "start", "mlflow")
    _wait(lambda: _call("GET", f"{endpoints['MLFLOW']}/health", timeout=5, raw=True)[0] == 200, 120)
    return time.monotonic()


def _postgres_restart(state, script, endpoints, url) -> float:
    _cli(script, state, "stop", "postgres", "--kill")
    _cli(script, state, "start", "postgres")
    return time.monotonic()


def _partition(state, script, endpoints, url) -> float:
    _cli(script, state, "partition", "ray-node2", "ray-head")
    time.sleep(20)
    _cli(script, state, "heal")
    return time.monotonic()


# -- helpers -------------------------------------------------------------------------------------
def _cli(script: Path, state: Path, *args: str) -> None:
    subprocess.run([sys.executable, str(script), "--state", str(state), *args], check=True, capture_output=True,
                   timeout=300)


def _call(method: str, url: str, body: dict | None = None, timeout: float = 30, raw: bool = False):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
            return response.status, (text if raw else json.loads(text))
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return None, None


def _status(url: str) -> dict | None:
    status, body = _call("GET", url, timeout=10)
    return body if status == 200 else None


def _progress(url: str) -> dict | None:
    body = _status(url)
    return None if body is None else {**body.get("progress", {}), "state": body.get("state")}


def _moved_on(url: str, done_before: int) -> bool:
    """The sweep made progress after the fault: another trial ended, or the job ended."""
    progress = _progress(url)
    if progress is None:
        return False
    return progress.get("trials_done", 0) > done_before or progress["state"] not in ("queued", "running")


def _wait(check, timeout_s: float):
    """The monotonic time `check()` first held (None after `timeout_s`); its value when it is not a bool."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return time.monotonic() if value is True else value
        time.sleep(0.5)
    return None


def _parents(mlflow_url: str, job_id: str) -> tuple:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments, filter_string=f"tags.`seedcore.job_id` = '{job_id}'")


def _resumed(mlflow_url: str, job_id: str) -> bool:
    """The job's sweep was taken over and restored (its parent run counts a resumption)."""
    try:
        _, parents = _parents(mlflow_url, job_id)
    except Exception:  # the tracking server is slow to answer: not yet
        return False
    return any(int(p.data.tags.get("seedcore.resumed", 0)) > 0 for p in parents)


def _runs(mlflow_url: str, job_id: str) -> tuple[int, int, int]:
    """(trial runs recorded for the job's sweep, duplicates, trial runs FAILED). Duplicates: runs beyond one per
    trial, plus trial runs whose per-round AUC curve holds a round more than once (a trial's rounds logged again
    after a retry or a resumed sweep)."""
    client, parents = _parents(mlflow_url, job_id)
    if not parents:
        return 0, 0, 0
    children = client.search_runs([parents[0].info.experiment_id], max_results=10_000,
                                  filter_string=f"tags.`{TAG_PARENT}` = '{parents[0].info.run_id}'")
    trials = Counter(run.data.tags.get(TAG_TRIAL) for run in children)
    failed = sum(1 for run in children if run.info.status == "FAILED")
    repeated = sum(1 for run in children if _repeats_a_round(client, run.info.run_id))
    return len(children), sum(count - 1 for count in trials.values()) + (len(parents) - 1) + repeated, failed


def _repeats_a_round(client, run_id: str) -> bool:
    steps = [m.step for m in client.get_metric_history(run_id, CURVE_METRIC)]
    return len(steps) != len(set(steps))


def _passed(row: dict) -> bool:
    return row["outcome"] == "succeeded" and row["recorded"] == row["requested"] and row["duplicates"] == 0


def _format(rows: list[dict], header: bool) -> str:
    columns = ("fault", "requested", "recorded", "duplicates", "outcome", "recovery_s")
    widths = (34, 9, 8, 10, 10, 10)
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))] if header else []
    for row in rows:
        cells = [str(row[c]) if row[c] is not None else "-" for c in columns]
        line = "  ".join(c.ljust(w) for c, w in zip(cells, widths))
        lines.append(line + (f"  ({row['error'][:200]})" if row.get("error") and row["outcome"] != "succeeded" else ""))
    return "\n".join(lines)


def _write_data(path: Path, rows: int = 20_000) -> None:
    import numpy as np
    import pandas as pd

    if path.exists():
        return
    rng = np.random.default_rng(11)
    x = rng.normal(size=(rows, 10))
    y = (rng.random(rows) < 1 / (1 + np.exp(-(x[:, 0] - 0.5 * x[:, 1] + 0.3 * x[:, 2] * x[:, 3])))).astype(int)
    pd.DataFrame(x, columns=[f"f{i}" for i in range(10)]).assign(target=y).to_csv(path, index=False)
