"""Watch the flywheel turn on the built-in data: a server, a model, concept drift, a monitor that fires,
the sweep it starts, the new version promoted, live AUC recovering, and the incidents that tell it.

Runs `seedcore up` in a scratch directory (nothing of yours is touched) on a free port, talks to it
over HTTP only, and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from seedcore.datasets import BUILTIN_FEATURES, BUILTIN_LABEL, builtin_frame
from seedcore.monitoring.scenario import SHIFTED_FEATURE, drifted_rows

SWEEP = {"space_type": "conservative", "config_type": "conservative", "custom_tune_config": {"num_samples": 4}}


class Api:
    def __init__(self, base: str):
        self.base = base

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 900) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"{method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from None


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def live(api: Api) -> str:
    info = api.call("GET", "/xgboost/model_info")
    metrics, drift = info["metrics"], info.get("drift") or {}
    worst = (drift.get("features") or [{}])[0]
    return (f"version {info['version']}: AUC {metrics['auc']:.3f} ({metrics['source']}, n={metrics['n']}), "
            f"holdout AUC {info['holdout']['auc']:.3f}, worst drift {worst.get('feature')} PSI {worst.get('psi', 0):.2f}")


def outcomes(api: Api, rows: list, labels: list) -> None:
    """Predict the rows, then report what really happened to them."""
    ids = api.call("POST", "/xgboost/predict", {"instances": rows})["prediction_ids"]
    api.call("POST", "/xgboost/feedback", {"prediction_ids": ids, "labels": labels})


def start_server(workdir: Path, port: int, interval: float) -> subprocess.Popen:
    env = {**os.environ, "SEEDCORE_DATA_DIR": str(workdir / "data"), "SEEDCORE_MLRUNS_DIR": str(workdir / "mlruns"),
           "SEEDCORE_PORT": str(port), "SEEDCORE_HOST": "127.0.0.1", "SEEDCORE_MONITOR_INTERVAL_S": str(interval),
           "SEEDCORE_LIVE_MIN_ROWS": "100", "SEEDCORE_LIVE_WINDOW_ROWS": "300", "SEEDCORE_POLL_INTERVAL_S": "1"}
    for key in ("SEEDCORE_DATABASE_URL", "SEEDCORE_TRACKING_URI", "SEEDCORE_REGISTRY_URI", "SEEDCORE_API_TOKEN"):
        env.pop(key, None)
    log = open(workdir / "server.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "seedcore.cli", "up", "--no-mlflow-ui"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(api: Api, server: subprocess.Popen, workdir: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited; see {workdir / 'server.log'}")
        try:
            api.call("GET", "/health", timeout=2)
            return
        except (OSError, SystemExit):
            time.sleep(1)
    raise SystemExit(f"the server did not answer within 180 s; see {workdir / 'server.log'}")


def demo(api: Api, interval: float) -> None:
    say("1. A first model: a small conservative sweep on the built-in data (promoted: nothing to beat yet)")
    first = api.call("POST", "/xgboost/tune", {**SWEEP, "experiment_name": "demo_initial"})
    print(f"version {first['model_version']} promoted, holdout AUC {first['holdout']['auc']:.3f}")

    say("2. Production as trained: 200 predictions, then their true outcomes")
    normal = builtin_frame(n_rows=200, seed=11)
    outcomes(api, normal[BUILTIN_FEATURES].round(6).values.tolist(), normal[BUILTIN_LABEL].astype(int).tolist())
    print(live(api))

    say("3. A monitor: live AUC under 0.70 over the last 300 outcomes re-tunes on training data + feedback")
    monitor = api.call("POST", "/xgboost/monitors", {
        "name": "live-auc-guard", "metric": "live_auc", "threshold": 0.70, "min_samples": 100,
        "window": {"rows": 300}, "cooldown_s": 600,
        "tune": {**SWEEP, "data_source": "feedback", "experiment_name": "demo_retune"}})
    print(f"monitor {monitor['id']}, checked every {interval:g} s")

    say(f"4. Concept drift: 300 new cases ({SHIFTED_FEATURE} shifted) whose outcomes the model now gets wrong")
    outcomes(api, *drifted_rows(300, seed=1))
    print(live(api))

    say("5. The monitor fires")
    while not (state := api.call("GET", f"/xgboost/monitors/{monitor['id']}"))["last_job_id"]:
        time.sleep(0.5)
    job_id = state["last_job_id"]
    print(f"live AUC {state['last_value']:.3f} < 0.70: job {job_id} started (trigger monitor:{monitor['id']})")
    follow(api, job_id)

    say("6. Production after the new version: 300 more drifted cases and their outcomes")
    outcomes(api, *drifted_rows(300, seed=2))
    print(live(api))

    say("7. What flashbulb memory says (/mfb/incidents?min_salience=0.7)")
    for incident in reversed(api.call("GET", "/mfb/incidents?min_salience=0.7&limit=20")["items"]):
        payload = incident["payload"]
        print(f"  {incident['created_at'][11:19]}  {incident['event_type']:<28} salience {incident['salience']:.2f}  "
              f"job {str(payload.get('job_id'))[:8]}  version {incident['model_version']}")


def follow(api: Api, job_id: str) -> None:
    last = None
    while True:
        job = api.call("GET", f"/xgboost/tune/status/{job_id}")
        line = f"  [{job['state']}] trials {job['progress']['trials_done']}/{job['progress']['trials_total']}"
        if line != last:
            print(line, flush=True)
            last = line
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(1)
    if job["state"] != "succeeded":
        raise SystemExit(f"the sweep {job['state']}: {job['error']}")
    result, promotion = job["result"], job["result"]["promotion"]
    rows = result["dataset"]["rows"]
    print(f"trained on {result['dataset']['source']} ({sum(rows.values())} rows: training data + feedback)")
    print(f"version {result['model_version']}: promotion {promotion['status']} ({promotion.get('reason')})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/flywheel-demo", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument("--interval", type=float, default=2.0, help="monitor interval, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    port = args.port or _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="seedcore-flywheel-demo-"))
    print(f"scratch directory {workdir}; API http://127.0.0.1:{port}", flush=True)
    server = start_server(workdir, port, args.interval)
    try:
        api = Api(f"http://127.0.0.1:{port}")
        wait_healthy(api, server, workdir)
        demo(api, args.interval)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
