"""Schemathesis against our own `/openapi.json`: every phase (examples, coverage, fuzzing, stateful), every check.

`python -m bench fuzz [--requests N] [--against app|up] [--seed S]`: passes of Schemathesis's engine, each with
a new seed, until N requests were answered. `app`: the app (role "all") in this process under werkzeug's threaded
server; `up`: `seedcore up` in a subprocess. Both on free 127.0.0.1 ports, over a fresh store holding a production
model, with a bearer token, sweeps of 2 trials and a queue of 3 jobs (so the queue cap's 429 is reached).
Prints the requests sent, the 5xx answers, the schema violations and every failed check by check, each distinct
failure described; the server's own request counter (`/metrics`) is read before and after as a cross-check.
Exit status 1 on any 5xx, failed check or engine error.
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
# Every check Schemathesis has, less the two it cannot run here: object-level authorization needs a second user
# (we have one token) and a response-time limit is no contract of ours.
EXCLUDED_CHECKS = ["object_level_authorization", "max_response_time"]
# Checks of the answer against the document: status code, content type, headers, body.
SCHEMA_CHECKS = ("status_code_conformance", "content_type_conformance", "response_headers_conformance",
                 "response_schema_conformance")
# What refuses a schema-violating request: Schemathesis's list plus 413, the answer to a body or row list over
# its size cap (each such operation documents it).
NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
# The server under test: presets trimmed to 2 trials (any preset is valid, as under the default caps), a sync
# wait that gives up soon (then a 202), a queue of 3 jobs (then a 429), monitors and schedules checked each second.
SERVER_SETTINGS = {"api_token": TOKEN, "max_trials": 2, "preset_max_trials": 2, "max_time_budget_s": 7200.0,
                   "sync_wait_timeout_s": 2.0, "max_queued_jobs": 3, "poll_interval_s": 0.5,
                   "monitor_interval_s": 1.0}
# A schema-valid request may still be refused (400 naming the field) for a rule no JSON schema can state: one
# field against another, the data or model on the server, the server's caps, the content of a free-form object.
# Operation -> the fields such a 400 may name (the first part of `field`). Any other 400 for schema-valid input
# fails `positive_data_acceptance`: the document must state that bound.
_DATA = ("data_source", "label_column", "feature_columns")  # a file in the data dir; columns it has
_SWEEP = (*_DATA, "custom_search_space", "custom_tune_config", "select", "objectives")  # XGBoost's ranges, caps
UNSTATED_RULES = {
    ("GET", "/mfb/incidents"): ("since",),  # since <= until
    ("POST", "/mfb/incidents"): ("payload",),  # any JSON, within the guard's depth and 64-bit integers
    ("POST", "/xgboost/predict"): ("body", "features", "instances"),  # one of the two; the model's features
    ("POST", "/xgboost/batch_predict"): ("data_source", "feature_columns"),
    ("POST", "/xgboost/evaluate"): _DATA,
    ("POST", "/xgboost/feedback"): ("prediction_ids", "labels", "instances"),  # ids or rows; a label each
    ("POST", "/xgboost/monitors"): ("threshold", "max_drop", "tune"),  # exactly one; the sweep it runs
    ("PATCH", "/xgboost/monitors/{monitor_id}"): ("threshold", "max_drop", "tune"),
    ("POST", "/xgboost/schedules"): ("cron", "timezone", "tune"),  # cron grammar; the host's zone database
    ("PATCH", "/xgboost/schedules/{schedule_id}"): ("cron", "timezone", "tune"),
    ("POST", "/xgboost/train"): (*_DATA, "params"),
    ("POST", "/xgboost/tune"): _SWEEP,
    ("POST", "/xgboost/tune/submit"): _SWEEP,
    ("POST", "/xgboost/evolution/baselines"): ("job_id", "kind"),  # the job's kind, trigger and warm start
}
_METRIC = re.compile(r'^seedcore_http_requests_total\{endpoint="([^"]*)",method="([^"]*)",status="(\d+)"\} (\S+)$',
                     re.M)


@dataclass
class Tally:
    """What a fuzz run saw."""

    requests: int = 0
    server_errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    operations: Counter = field(default_factory=Counter)  # requests by documented operation
    fields: dict = field(default_factory=dict)  # operation -> the body fields it was sent
    failed_checks: Counter = field(default_factory=Counter)  # failed check results, by check
    failures: dict = field(default_factory=dict)  # (check, operation, title, cause) -> the first one, described
    causes: Counter = field(default_factory=Counter)  # failed checks by (check, operation, title, cause)
    unstated: Counter = field(default_factory=Counter)  # schema-valid 400s for an unstated rule, by operation+field
    phases: Counter = field(default_factory=Counter)  # scenarios by phase
    errors: list = field(default_factory=list)  # the engine's own errors (a schema it cannot use, a hook crash)
    passes: int = 0
    seconds: float = 0.0
    server_counted: Counter = field(default_factory=Counter)  # the server's count of its answers, by status

    @property
    def schema_violations(self) -> int:
        return sum(self.failed_checks[check] for check in SCHEMA_CHECKS)

    @property
    def ok(self) -> bool:
        return not (self.server_errors or self.failed_checks or self.errors)

    def summary(self) -> str:
        lines = [f"requests: {self.requests} in {self.passes} passes, {self.seconds:.0f} s "
                 f"({self.requests / max(self.seconds, 1e-9):.1f}/s); the server counted "
                 f"{sum(self.server_counted.values()):.0f} (with its /metrics and /openapi.json reads and the "
                 "requests some checks send on their own)",
                 f"5xx: {self.server_errors}",
                 f"schema violations: {self.schema_violations}",
                 f"failed checks: {sum(self.failed_checks.values())}; by check: "
                 + (", ".join(f"{k} {v}" for k, v in sorted(self.failed_checks.items())) or "none"),
                 "statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())),
                 "server counted: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(self.server_counted.items())),
                 "scenarios by phase: " + ", ".join(f"{k} {v}" for k, v in sorted(self.phases.items())),
                 "schema-valid input refused for an unstated rule: "
                 + (", ".join(f"{k} {v}" for k, v in sorted(self.unstated.items())) or "none"),
                 f"operations: {len(self.operations)} (method and path as sent, undocumented methods included)"]
        lines += [f"  {op}: {n}" for op, n in sorted(self.operations.items())]
        for key, described in sorted(self.failures.items()):
            check, operation, title, cause = key
            lines.append(f"FAILED {check} on {operation}: {title} ({cause}; {self.causes[key]} times)\n  {described}")
        lines += [f"ENGINE ERROR {error}" for error in self.errors]
        return "\n".join(lines)


def config(seed: int, max_examples: int):
    """The run's Schemathesis configuration: the token on every request, every phase and check."""
    from schemathesis.config import SchemathesisConfig

    cfg = SchemathesisConfig.from_dict({
        "seed": seed, "headers": {"Authorization": f"Bearer {TOKEN}"}, "workers": 1, "request-timeout": 120,
        "continue-on-failure": True, "suppress-health-check": ["all"],
        # NUL is refused in any text, as the document's description says (a 400, never generated as valid)
        "generation": {"mode": "all", "max-examples": max_examples, "no-shrink": True, "allow-x00": False},
        "phases": {"stateful": {"inference": {"algorithms": ["location-headers", "dependency-analysis"]}}},
        "checks": {"negative_data_rejection": {"expected-statuses": NEGATIVE_STATUSES}},
    })
    cfg.projects.override.checks.update(included_check_names=["all"], excluded_check_names=EXCLUDED_CHECKS)
    return cfg


def fuzz(base_url: str, requests: int, seed: int = 0, max_examples: int = 20, budget_s: float | None = None,
         passes: int | None = None) -> Tally:
    """Passes of every phase and check against `base_url` (a new seed each) until `requests` were answered
    (each pass runs whole), `passes` were run or `budget_s` seconds went by (that stops a pass where it is)."""
    import schemathesis
    from schemathesis.engine import events, from_schema

    tally = Tally()
    started = time.perf_counter()
    before = server_counts(base_url)
    lock = threading.Lock()

    def after_call(context, case, response):
        operation = f"{case.method.upper()} {case.operation.path}"
        with lock:
            tally.requests += 1
            tally.statuses[response.status_code] += 1
            tally.server_errors += response.status_code >= 500
            tally.operations[operation] += 1
            if isinstance(case.body, dict):
                tally.fields.setdefault(operation, set()).update(case.body)

    def filter_failure(context, failure, case, response):
        """Keep every failure but a schema-valid request's 400 for a rule the document cannot state."""
        from schemathesis.openapi.checks import RejectedPositiveData

        if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
            return True
        key = (case.method.upper(), case.operation.path)
        try:
            named = (response.json().get("field") or "").split(".")[0]
        except (ValueError, AttributeError):
            return True
        if named not in UNSTATED_RULES.get(key, ()):
            return True
        with lock:
            tally.unstated[f"{' '.join(key)} {named}"] += 1
        return False

    def out_of_time() -> bool:
        return budget_s is not None and time.perf_counter() - started >= budget_s

    while tally.requests < requests and not out_of_time() and (passes is None or tally.passes < passes):
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json",
                                               config=config(seed + tally.passes, max_examples))
        schema.hooks.register_hook_with_name(after_call, "after_call")
        schema.hooks.register_hook_with_name(filter_failure, "filter_failure")
        stream = from_schema(schema).execute()
        for event in stream:
            if isinstance(event, (events.ScenarioFinished, events.FuzzScenarioFinished)):
                tally.phases[str(getattr(event, "phase", "fuzz"))] += 1
                _record_checks(tally, event.recorder)
            elif isinstance(event, events.NonFatalError):
                tally.errors.append(f"{event.label}: {event.info.title}: {event.info.message}"[:2000])
            elif isinstance(event, events.FatalError):
                tally.errors.append(f"{type(event.exception).__name__}: {event.exception}"[:2000])
            if out_of_time():
                stream.stop()
        tally.passes += 1
        log(f"{NAME}: pass {tally.passes}: {tally.requests} requests, {tally.server_errors} 5xx, "
            f"{sum(tally.failed_checks.values())} failed checks so far")
    tally.seconds = time.perf_counter() - started
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
        named = answer.json().get("field")
    except (ValueError, AttributeError):
        named = None
    return f"{answer.status_code} field={named}"


def server_counts(base_url: str) -> Counter:
    """The server's own count of its answers by status (`seedcore_http_requests_total` on /metrics)."""
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
    from bench._serving import live_server
    from seedcore.api import create_app
    from seedcore.server.process import stop_app

    settings = _store(root)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line a request
    app = create_app(settings)
    try:
        with live_server(app) as url:
            yield url
    finally:
        stop_app(app)


@contextmanager
def seedcore_up(root: Path):
    """`seedcore up` (no MLflow UI, no Ray dashboard) in its own process group, on a free port."""
    from bench._ports import free_port
    from bench._serving import _base_env, _spawn, request, wait_until

    settings = _store(root)
    port = free_port()
    env = {**_base_env(), "SEEDCORE_DATA_DIR": str(settings.data_dir), "SEEDCORE_MLRUNS_DIR": str(settings.mlruns_dir),
           "SEEDCORE_TRACKING_URI": settings.tracking_uri, "SEEDCORE_HOST": "127.0.0.1", "SEEDCORE_PORT": str(port),
           "SEEDCORE_RAY_DASHBOARD_PORT": "0", **{f"SEEDCORE_{k.upper()}": str(v) for k, v in SERVER_SETTINGS.items()}}
    logs = root / "up-logs"
    logs.mkdir()
    server = _spawn("up", [sys.executable, "-m", "seedcore.cli", "up", "--no-mlflow-ui"], env, port, logs)
    try:
        wait_until(server, lambda: request(port, "GET", "/xgboost/model_info")[1].get("status") == "success", 300)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _store(root: Path):
    """Settings over a fresh store under `root` holding a production model, with SERVER_SETTINGS."""
    from bench._serving import promoted_store
    from bench._workspace import Workspace

    settings, _version = promoted_store(Workspace(root), NAME)
    return settings.model_copy(update=SERVER_SETTINGS)


def main(argv: list[str] | None = None) -> int:
    import shutil
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="requests to reach (default 10000)")
    parser.add_argument("--against", choices=("app", "up"), default="app",
                        help="app: the app in this process (default); up: `seedcore up` in a subprocess")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first pass (each pass adds one)")
    parser.add_argument("--max-examples", type=int, default=25, help="examples per operation and phase in a pass")
    parser.add_argument("--budget", type=float, help="stop after this many seconds even short of --requests")
    parser.add_argument("--workdir", type=Path, help="scratch directory, kept (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="seedcore-fuzz-", dir=args.workdir))
    serve = in_process if args.against == "app" else seedcore_up
    try:
        with serve(root) as base_url:
            log(f"{NAME}: fuzzing {base_url} ({args.against}) for {args.requests} requests")
            tally = fuzz(base_url, args.requests, seed=args.seed, max_examples=args.max_examples,
                         budget_s=args.budget)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(tally.summary(), flush=True)
    return 0 if tally.ok else 1


if __name__ == "__main__":
    sys.exit(main())
