"""`seedcore tune|train`: run a sweep or a training with live progress and print its result. A sweep goes to
a running `seedcore up` that shares our database, else (and a training always) runs in this process.
"""

from __future__ import annotations

import json
import sys
import time

from seedcore.cli.common import CALLER_ERROR, INTERRUPTED, OK, OUR_FAULT, PROMOTION_REJECTED, print_json
from seedcore.cli.request_options import add_request_options, request_from
from seedcore.config import Settings
from seedcore.db.tables_jobs import FINISHED_STATES, KIND_TRAIN, KIND_TUNE, TRIGGER_MANUAL
from seedcore.request_models import TrainRequest, TuneRequest
from seedcore.vocabulary import PromotionStatus

# At a terminal a sweep starts small and quick (the API's defaults are the guide's).
TERMINAL_DEFAULTS = {"space_type": "conservative", "config_type": "conservative"}
FOLLOW_S = 0.25


def add_commands(sub) -> None:
    """Add tune and train to the `seedcore` subcommands."""
    tune = sub.add_parser("tune", help="run a sweep with live progress (in a running `seedcore up` sharing the "
                                       "database, else here); prints the result as JSON")
    add_request_options(tune, TuneRequest)
    tune.add_argument("--here", action="store_true", help="run the sweep in this process (its own Ray) even when "
                                                          "a `seedcore up` server shares the database")
    tune.set_defaults(handler=_run_job, kind=KIND_TUNE, model=TuneRequest, **TERMINAL_DEFAULTS)
    train = sub.add_parser("train", help="train and register one model with fixed parameters; prints the result")
    add_request_options(train, TrainRequest)
    train.set_defaults(handler=_run_job, kind=KIND_TRAIN, model=TrainRequest)


def _run_job(settings: Settings, args) -> int:
    """Run a sweep or training with live progress and print its result; Ctrl-C cancels it.

    A sweep goes to a running `seedcore up` that shares our database (its Ray is already up) unless
    `--here` is given; otherwise, and for trainings, the job runs in this process."""
    request = request_from(args, args.model)
    if args.kind == KIND_TUNE and not getattr(args, "here", False):
        from seedcore.runtime.discovery import find_server

        server = find_server(settings)
        if server is not None:
            return _hand_off(settings, server, request)
    return run_here(settings, args.kind, request)


def run_here(settings: Settings, kind: str, request, trigger: str = TRIGGER_MANUAL) -> int:
    """Create the job (started by `trigger`) already claimed by this process (so a server's runner beside us
    never takes it) and run it here. Checked first (400s before Ray starts); a sweep then starts Ray in the main thread (Ray's
    signal handling wants it there) while a thread loads the rest of its cold start (MLflow and its store,
    the searcher's library)."""
    from seedcore.db.database import Database
    from seedcore.db.migrations import upgrade
    from seedcore.jobs.runner import JobRunner
    from seedcore.organism.energy import EnergyMeter
    from seedcore.promotion.service import PromotionService
    from seedcore.promotion.followups import RESULT_KEY

    settings.ensure_dirs()
    upgrade(settings.database_url)
    # Our own Ray beside a server's: never the server's dashboard port (SEEDCORE_RAY_DASHBOARD_PORT is for
    # `seedcore up`); Ray takes 8265 or the next free port.
    settings = settings.replace(ray_dashboard_port=None)
    db = Database(settings.database_url)
    meter = EnergyMeter(settings, db)  # the energy ledger: the job's cost, and what its promotion replaced
    promotion = PromotionService(settings, db, on_promoted=meter.on_promoted)
    promotion.add_to_payload(meter.at_promotion)  # the ledger as of the promotion, in its incident
    runner = JobRunner(settings, db, promotion, watchers=[meter.watch])
    job = runner.submit(request, trigger=trigger, claim=True)  # 400s before anything runs
    started_ray = False
    try:
        try:
            if kind == KIND_TUNE:
                started_ray = _start_ray_and_prepare(settings, request)
        except BaseException as exc:  # Ray did not start, or Ctrl-C while it started
            _end_unstarted(runner, job, exc)
            raise
        try:
            runner.run_claimed(job)
            _follow(lambda: runner.jobs.get(job["id"]))
            result = runner.wait(job["id"])["result"]
            print_json(result)  # the answer as soon as it exists: its follow-ups end before the process does
            print(f"finishing the follow-ups ({', '.join(result[RESULT_KEY])}) before exiting ...",
                  file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            print("\ncancelling: stopping trials, closing runs ...", file=sys.stderr, flush=True)
            runner.cancel(job["id"])
            return INTERRUPTED
        finally:
            # a job still running (Ctrl-C, Ray failing) ends cancelled, its runs KILLED; an answered one's
            # follow-ups end, or stay pending in its row for the next server start to finish
            runner.stop()
    finally:
        if started_ray:
            from seedcore.tuning.cluster import shutdown_ray

            shutdown_ray()
    _say_followups(runner, job["id"])
    return PROMOTION_REJECTED if result["promotion"]["status"] == PromotionStatus.REJECTED else OK


def _say_followups(runner, job_id: str) -> None:
    """How the answered job's follow-ups ended, as its row tells (on stderr: the exit code is the answer's)."""
    from seedcore.errors import SeedcoreError
    from seedcore.promotion.followups import RESULT_KEY

    try:
        states = runner.jobs.get(job_id)["result"][RESULT_KEY]
    except SeedcoreError as exc:
        print(f"follow-ups: their states cannot be read ({exc.message})", file=sys.stderr, flush=True)
        return
    print("follow-ups: " + ", ".join(f"{step} {state}" for step, state in states.items()), file=sys.stderr,
          flush=True)


def _start_ray_and_prepare(settings: Settings, request) -> bool:
    """Start (or join) Ray while a thread does the sweep's cold work; True when this call started it."""
    from concurrent.futures import ThreadPoolExecutor

    from seedcore.tuning.cluster import end_after_trials, ensure_ray

    def prepare() -> None:  # the sweep module's imports (MLflow, Tune, XGBoost) happen in the thread too
        from seedcore.tuning.sweep import prepare_sweep

        prepare_sweep(settings, request)

    with ThreadPoolExecutor(1, thread_name_prefix="seedcore-prepare") as pool:
        prepared = pool.submit(prepare)
        started = ensure_ray(settings)
        if started:  # ours alone: it ends with the trials, before the winner is refit and registered
            end_after_trials()
        prepared.result()
    return started


def _end_unstarted(runner, job: dict, exc: BaseException) -> None:
    """A job whose sweep never began ends now: cancelled after Ctrl-C, failed otherwise (no run of it exists)."""
    from seedcore.jobs.store import JOB_CANCELLED, JOB_FAILED

    interrupted = isinstance(exc, KeyboardInterrupt)
    runner.jobs.finish(job["id"], JOB_CANCELLED if interrupted else JOB_FAILED,
                       error="interrupted while Ray started" if interrupted else f"Ray did not start: {exc}")


def _hand_off(settings: Settings, server: str, request) -> int:
    """Queue the sweep in the running server's job runner over its REST API and follow it there."""
    from seedcore.names import TRIGGER_HEADER
    from seedcore.runtime.discovery import call

    status, job = call("POST", f"{server}/xgboost/tune/submit", request.model_dump(mode="json", exclude_unset=True),
                       token=settings.api_token, headers={TRIGGER_HEADER: TRIGGER_MANUAL})  # a person, not `api`
    return follow_remote(settings, server, status, job)


def follow_remote(settings: Settings, server: str, status: int, job: dict) -> int:
    """Follow a job the server at `server` answered 202 for (`status`, `job`) and print its result, as a sweep
    run here would be; Ctrl-C cancels it there. Nothing slow comes between the 202 and the watch for Ctrl-C
    (the job runs already): what ends it badly is imported once it has ended."""
    from seedcore.runtime.discovery import call

    token = settings.api_token
    if status != 202:
        print(json.dumps(job), file=sys.stderr)
        return CALLER_ERROR if 400 <= status < 500 else OUR_FAULT
    job_id = job["job_id"]
    print(f"handed to the server at {server}: job {job_id} (Ctrl-C cancels it; --here runs a sweep in this "
          "process)", file=sys.stderr, flush=True)
    try:
        job = _follow(lambda: _remote_job(server, job_id))
    except KeyboardInterrupt:
        print("\ncancelling: stopping trials, closing runs ...", file=sys.stderr, flush=True)
        call("POST", f"{server}/xgboost/tune/{job_id}/cancel", token=token)
        return INTERRUPTED
    if job["state"] != "succeeded":
        from seedcore.jobs.runner import ended_error

        raise ended_error(job_id, job["state"], job.get("error"))
    result = job["result"]
    print_json(result)
    return PROMOTION_REJECTED if result["promotion"]["status"] == PromotionStatus.REJECTED else OK


def _remote_job(server: str, job_id: str) -> dict:
    """The job as the server reports it, with its progress flattened like a job row's."""
    from seedcore.errors import SeedcoreError
    from seedcore.runtime.discovery import call

    status, job = call("GET", f"{server}/xgboost/tune/status/{job_id}", timeout=10)
    if status != 200:
        raise SeedcoreError(f"the server at {server} stopped answering about job {job_id}: "
                            f"{job.get('error') or status}; `seedcore jobs show {job_id}` tells how it ended")
    return {**job, **job["progress"]}


def _follow(read) -> dict:
    """Live progress on stderr until the job `read()` returns has ended (a progress bar at a terminal,
    plain lines otherwise); the job as last read."""
    from seedcore.cli.common import Progress

    with Progress("trials") as progress:
        while True:
            job = read()
            progress.show(job["state"], job.get("trials_done") or 0, job.get("trials_total") or 0,
                          f"best AUC {job['best_auc']:.4f}" if job.get("best_auc") is not None else "")
            if job["state"] in FINISHED_STATES:
                return job
            time.sleep(FOLLOW_S)
