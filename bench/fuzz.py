"""Schemathesis against our own `/openapi.json`: every phase (examples, coverage, fuzzing, stateful), every check.

`python -m bench fuzz [--requests N] [--against app|up] [--seed S]`: passes of Schemathesis's engine, each with
a new seed, until N requests were answered. `app`: the app (role "all") in this process under werkzeug's threaded
server; `up`: `seedcore up` in a subprocess. Both on free 127.0.0.1 ports, on a fresh store holding a production
model, with a bearer token, sweeps capped tiny and a small queue (so the queue cap's 429 is reached).
Prints the requests sent, the 5xx answers and the failed checks by check (every distinct failure described);
the server's own request counter (`/metrics`) is read before and after as a cross-check. Exit status 1 on any
5xx or failed check.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench._report import log

NAME = "fuzz"
TOKEN = "fuzz-token"
# Every check Schemathesis has, less the ones it cannot run here: object-level authorization needs two users
# (we have one token) and a response-time limit is not a contract of ours.
EXCLUDED_CHECKS = ["object_level_authorization", "max_response_time"]
# Checks about the answer's form: status code, content type, headers and body as the document states them.
SCHEMA_CHECKS = ("status_code_conformance", "content_type_conformance", "response_headers_conformance",
                 "response_schema_conformance")
# The server under test: sweeps of 2 trials and a few seconds, a sync wait that gives up soon (then a 202),
# a queue of 3 jobs (then a 429) and the flywheel loops checking monitors and schedules every second.
SERVER_SETTINGS = {"api_token": TOKEN, "max_trials": 2, "max_time_budget_s": 5.0, "sync_wait_timeout_s": 2.0,
                   "max_queued_jobs": 3, "poll_interval_s": 0.5, "monitor_interval_s": 1.0}
_METRIC = re.compile(r'^seedcore_http_requests_total\{endpoint="([^"]*)",method="([^"]*)",status="(\d+)"\} (\S+)$',
                     re.M)


@dataclass
class Tally:
    """What one fuzz run saw."""

    requests: int = 0
    server_errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    operations: Counter = field(default_factory=Counter)  # requests by documented operation
    failed_checks: Counter = field(default_factory=Counter)  # failed check results, by check
    failures: dict = field(default_factory=dict)  # (check, operation, title, cause) -> the first one, described
    causes: Counter = field(default_factory=Counter)  # failed checks by (check, operation, title, cause)
    passes: int = 0
    phases: Counter = field(default_factory=Counter)  # scenarios by phase
    errors: list = field(default_factory=list)  # the engine's own errors (a schema it cannot use, a hook crash)
    seconds: float = 0.0
    server_counted: Counter = field(default_factory=Counter)  # the server's count of answers, by status

    @property
    def violations(self) -> int:
        return sum(n for check, n in self.failed_checks.items() if check != "not_a_server_error")

    @property
    def schema_violations(self) -> int:
        return sum(self.failed_checks[check] for check in SCHEMA_CHECKS)

    def summary(self) -> str:
        lines = [f"requests: {self.requests} in {self.passes} passes, {self.seconds:.0f} s "
                 f"({self.requests / max(self.seconds, 1e-9):.1f}/s)",
                 f"5xx: {self.server_errors}",
                 f"schema violations: {self.schema_violations}",
                 f"failed checks (all): {sum(self.failed_checks.values())}",
                 "by check: " + (", ".join(f"{k} {v}" for k, v in sorted(self.failed_checks.items())) or "none"),
                 "statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())),
                 "server counted: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(self.server_counted.items())),
                 "scenarios by phase: " + ", ".join(f"{k} {v}" for k, v in sorted(self.phases.items())),
                 f"operations: {len(self.operations)}"]
        lines += [f"  {op}: {n}" for op, n in sorted(self.operations.items())]
        for key, described in sorted(self.failures.items()):
            check, operation, title, cause = key
            lines.append(f"FAILED {check} on {operation}: {title} ({cause}; {self.causes[key]} times)\n  {described}")
        lines += [f"ENGINE ERROR {error}" for error in self.errors]
        return "\n".join(lines)


def config(seed: int, max_examples: int):
    """The run's Schemathesis configuration: the token on every request, all phases and checks."""
    from schemathesis.config import SchemathesisConfig

    cfg = SchemathesisConfig.from_dict({
        "seed": seed, "headers": {"Authorization": f"Bearer {TOKEN}"}, "workers": 1, "request-timeout": 120,
        "continue-on-failure": True, "suppress-health-check": ["all"],
        "generation": {"mode": "all", "max-examples": max_examples, "no-shrink": True},
        "phases": {"stateful": {"inference": {"algorithms": ["location-headers", "dependency-analysis"]}}},
    })
    cfg.projects.override.checks.update(included_check_names=["all"], excluded_check_names=EXCLUDED_CHECKS)
    return cfg


def fuzz(base_url: str, requests: int, seed: int = 0, max_examples: int = 20, budget_s: float | None = None,
         tally: Tally | None = None) -> Tally:
    """Passes of every phase and check against `base_url` (new seed each) until `requests` were answered."""
    import schemathesis
    from schemathesis.engine import events, from_schema

    tally = tally or Tally()
    started = time.perf_counter()
    before = server_counts(base_url)
    lock = threading.Lock()
    while tally.requests < requests and (budget_s is None or time.perf_counter() - started < budget_s):
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json",
                                               config=config(seed + tally.passes, max_examples))

        def after_call(context, case, response):
            with lock:
                tally.requests += 1
                tally.statuses[response.status_code] += 1
                tally.server_errors += response.status_code >= 500
                tally.operations[f"{case.method.upper()} {case.operation.path}"] += 1

        schema.hooks.register_hook_with_name(after_call, "after_call")
        stream = from_schema(schema).execute()
        for event in stream:
            if isinstance(event, (events.ScenarioFinished, events.FuzzScenarioFinished)):
                tally.phases[getattr(event, "phase", "fuzz")] += 1
                _record_checks(tally, event.recorder)
            elif isinstance(event, (events.NonFatalError, events.FatalError)):
                tally.errors.append(str(getattr(event, "info", None) or getattr(event, "exception", event))[:2000])
            if budget_s is not None and time.perf_counter() - started >= budget_s:
                stream.stop()
        tally.passes += 1
        log(f"{NAME}: pass {tally.passes}: {tally.requests} requests, {tally.server_errors} 5xx, "
            f"{sum(tally.failed_checks.values())} failed checks so far")
    tally.seconds += time.perf_counter() - started
    after = server_counts(base_url)
    tally.server_counted.update({k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)})
    return tally


def _record_checks(tally: Tally, recorder) -> None:
    from schemathesis.engine import Status

    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.status != Status.FAILURE:
                continue
            tally.failed_checks[check.name] += 1
            failure = check.failure_info.failure
            node = recorder.cases.get(case_id)
            operation = node.value.operation.label if node else (failure.operation or "?")
            interaction = recorder.interactions.get(case_id)
            answer = interaction.response if interaction is not None else None
            key = (check.name, operation, failure.title, _cause(answer))
            tally.causes[key] += 1
            if key not in tally.failures:
                said = f"{answer.status_code} {(answer.content or b'')[:300].decode(errors='replace')}" if answer else "-"
                tally.failures[key] = f"{failure.message}\n    {check.failure_info.code_sample[:600]}\n    -> {said}"


def _cause(answer) -> str:
    """What a failed answer says went wrong: its status and the field its error names."""
    if answer is None:
        return "no answer"
    try:
        field_name = answer.json().get("field")
    except (ValueError, AttributeError):
        field_name = None
    return f"{answer.status_code} field={field_name}"


def server_counts(base_url: str) -> Counter:
    """The server's own count of answers by status (`seedcore_http_requests_total` on /metrics)."""
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/metrics", timeout=30) as response:
        text = response.read().decode()
    counts: Counter = Counter()
    for _endpoint, _method, status, value in _METRIC.findall(text):
        counts[status] += float(value)
    return counts


# -- the server under test ---------------------------------------------------------------------------
@contextmanager
def in_process(root: Path):
    """Our app (role "all") in this process, under werkzeug's threaded server on a free port."""
    from werkzeug.serving import make_server

    from bench._workspace import Workspace
    from seedcore.api import create_app
    from seedcore.server import stop_app

    settings, _version = _store(Workspace(root))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line a request
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        stop_app(app)


@contextmanager
def seedcore_up(root: Path):
    """`seedcore up` (no MLflow UI) in its own process group, on free ports, over the same kind of store."""
    from bench._serving import _base_env, _spawn, free_port, request, wait_until
    from bench._workspace import Workspace

    ws = Workspace(root)
    settings, _version = _store(ws)
    port = free_port()
    env = {**_base_env(), "SEEDCORE_DATA_DIR": str(settings.data_dir), "SEEDCORE_MLRUNS_DIR": str(settings.mlruns_dir),
           "SEEDCORE_TRACKING_URI": settings.tracking_uri, "SEEDCORE_HOST": "127.0.0.1", "SEEDCORE_PORT": str(port),
           "SEEDCORE_RAY_DASHBOARD_PORT": "0",
           **{f"SEEDCORE_{k.upper()}": str(v) for k, v in SERVER_SETTINGS.items()}}
    server = _spawn("up", [sys.executable, "-m", "seedcore.cli", "up", "--no-mlflow-ui"], env, port,
                    ws.new_dir("up-logs"))
    try:
        wait_until(server, lambda: request(port, "GET", "/xgboost/model_info")[1].get("status") == "success", 300)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _store(ws):
    """A fresh store holding a production model, with the server settings above."""
    from bench._serving import promoted_store

    settings, version = promoted_store(ws, "fuzz")
    return settings.model_copy(update=SERVER_SETTINGS), version


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="answered requests to reach (default 10000)")
    parser.add_argument("--against", choices=("app", "up"), default="app",
                        help="app: the app in this process (default); up: `seedcore up` in a subprocess")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first pass (each pass adds one)")
    parser.add_argument("--max-examples", type=int, default=20, help="examples per operation and phase in a pass")
    parser.add_argument("--budget", type=float, help="stop after this many seconds even short of --requests")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a new temporary one, removed)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="seedcore-fuzz-", dir=args.workdir))
    serve = in_process if args.against == "app" else seedcore_up
    with serve(root) as base_url:
        log(f"{NAME}: fuzzing {base_url} ({args.against}) up to {args.requests} requests")
        tally = fuzz(base_url, args.requests, seed=args.seed, max_examples=args.max_examples, budget_s=args.budget)
    print(tally.summary(), flush=True)
    if args.workdir is None:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 1 if tally.server_errors or tally.failed_checks or tally.errors else 0


if __name__ == "__main__":
    sys.exit(main())
