"""The `seedcore` command: up, serve, tune, train, promote, db."""

from __future__ import annotations

import argparse
import json
import sys
import time

import pydantic

from seedcore.config import Settings
from seedcore.errors import SeedcoreError
from seedcore.requests import invalid_request


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.handler(settings, args) or 0
    except (SeedcoreError, pydantic.ValidationError) as exc:
        error = invalid_request(exc) if isinstance(exc, pydantic.ValidationError) else exc
        print(json.dumps(error.to_dict()), file=sys.stderr)
        return 2 if error.status_code < 500 else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seedcore", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="command")

    up = sub.add_parser("up", help="migrate, then run the API (:8000), job runner, local Ray and MLflow UI (:5000)")
    up.add_argument("--no-mlflow-ui", action="store_true")
    up.set_defaults(handler=_up)

    serve = sub.add_parser("serve", help="a predict-only server (no job runner, no Ray)")
    serve.add_argument("--workers", type=int, default=None)
    serve.set_defaults(handler=_serve)

    tune = sub.add_parser("tune", help="run a sweep here, with live progress; prints the result as JSON")
    tune.add_argument("--space", default="conservative", choices=["conservative", "default", "aggressive"])
    tune.add_argument("--config", default="conservative", choices=["conservative", "default", "aggressive"])
    tune.add_argument("--experiment-name", default="xgboost_tuning")
    tune.add_argument("--data", dest="data_source", help="CSV or Parquet file inside the data dir")
    tune.add_argument("--label-column")
    tune.add_argument("--feature-columns", help="comma-separated")
    tune.add_argument("--custom-space", type=json.loads, help="JSON object, the guide's dictionary form")
    tune.add_argument("--custom-config", type=json.loads, help="JSON object: num_samples, time_budget_s, ...")
    tune.add_argument("--no-promote", action="store_true")
    tune.add_argument("--force", action="store_true", help="promote even if the champion is better")
    tune.set_defaults(handler=_tune)

    promote = sub.add_parser("promote", help="promote a registered version through the champion gate")
    promote.add_argument("--version", type=int, required=True)
    promote.add_argument("--force", action="store_true")
    promote.set_defaults(handler=_promote)

    db = sub.add_parser("db", help="our SQL schema (flashbulb memory, jobs)")
    db_sub = db.add_subparsers(required=True, metavar="action")
    db_sub.add_parser("upgrade", help="migrate to the latest revision").set_defaults(handler=_db_upgrade)
    down = db_sub.add_parser("downgrade", help="migrate down to REVISION (e.g. base)")
    down.add_argument("revision")
    down.set_defaults(handler=_db_downgrade)
    db_sub.add_parser("current", help="print the current revision").set_defaults(handler=_db_current)
    from seedcore.cli_flywheel import add_commands as add_flywheel_commands

    add_flywheel_commands(sub)  # evaluate, monitors, schedules
    return parser


def _db_upgrade(settings: Settings, args) -> int:
    from seedcore.db.database import current_revision, upgrade

    settings.ensure_dirs()
    upgrade(settings.database_url)
    print(f"database at revision {current_revision(settings.database_url)} ({_redact(settings.database_url)})")
    return 0


def _db_downgrade(settings: Settings, args) -> int:
    from seedcore.db.database import current_revision, downgrade

    downgrade(settings.database_url, args.revision)
    print(f"database at revision {current_revision(settings.database_url) or 'base'}")
    return 0


def _db_current(settings: Settings, args) -> int:
    from seedcore.db.database import current_revision, head_revision

    print(f"current: {current_revision(settings.database_url) or 'base'}  head: {head_revision()}")
    return 0


def _up(settings: Settings, args) -> int:
    from seedcore.server import run_api, start_mlflow_ui, stop_process

    _db_upgrade(settings, args)
    _init_mlflow_store(settings)
    ui = None if args.no_mlflow_ui else start_mlflow_ui(settings)
    print(f"SeedCore Flywheel API  http://{settings.host}:{settings.port}  (docs: /docs, OpenAPI: /openapi.json)")
    if ui is not None:
        print(f"MLflow UI              http://{settings.host}:{settings.mlflow_ui_port}")
    print(f"data dir {settings.data_dir}; tracking {settings.tracking_uri}; Ctrl-C stops everything", flush=True)
    try:
        run_api(settings, role="all")
    finally:
        stop_process(ui)
    return 0


def _init_mlflow_store(settings: Settings) -> None:
    """Create MLflow's tables once, here: the MLflow UI and the API worker would otherwise both migrate
    a fresh store at the same moment, and the loser fails to boot."""
    if settings.tracking_uri.startswith(("http://", "https://")):
        return  # a tracking server owns its store
    from seedcore.registry import Registry
    from seedcore.stores import mlflow_file_problem

    problem = mlflow_file_problem(settings)
    try:
        if problem is None:
            Registry(settings).client.search_experiments(max_results=1)
    except SeedcoreError as exc:
        problem = exc.message
    if problem:  # still start: serving falls back to the verified blessed file and /health says why
        print(f"warning: {problem}; serving from the blessed model file if there is one (see /health)",
              file=sys.stderr, flush=True)


def _serve(settings: Settings, args) -> int:
    from seedcore.server import run_api

    workers = args.workers or settings.serve_workers
    print(f"SeedCore serving  http://{settings.host}:{settings.port}  ({workers} workers)", flush=True)
    run_api(settings, role="serve", workers=workers)
    return 0


def _tune(settings: Settings, args) -> int:
    """Queue the sweep as a job in this process's runner, print progress until it ends."""
    from seedcore.db.database import Database, upgrade
    from seedcore.db.tables_jobs import TRIGGER_MANUAL
    from seedcore.runner import JobRunner
    from seedcore.tuning import SweepRequest

    settings.ensure_dirs()
    upgrade(settings.database_url)
    features = args.feature_columns.split(",") if args.feature_columns else None
    request = SweepRequest(space_type=args.space, config_type=args.config, custom_search_space=args.custom_space,
                           custom_tune_config=args.custom_config, experiment_name=args.experiment_name,
                           data_source=args.data_source, label_column=args.label_column, feature_columns=features,
                           promote=not args.no_promote, force=args.force)
    from seedcore.tuning.cluster import ensure_ray, shutdown_ray

    runner = JobRunner(settings, Database(settings.database_url), poll_s=0.2)
    job = runner.submit(request, trigger=TRIGGER_MANUAL)  # validates first: a mistake is reported before Ray starts or threads run
    try:
        ensure_ray(settings)  # in the main thread: Ray's own signal handling wants it there
    except BaseException:
        runner.cancel(job["id"])  # never leave a queued job behind for the next runner to pick up
        raise
    runner.start()
    try:
        _follow(runner, job["id"])
        result = runner.wait(job["id"])["result"]
    except KeyboardInterrupt:
        print("\ncancelling: stopping trials, closing runs ...", file=sys.stderr, flush=True)
        runner.cancel(job["id"])
        _wait_quietly(runner, job["id"])
        return 130
    finally:
        runner.stop()
        shutdown_ray()
    print(json.dumps(result, indent=2, default=str))
    return 0


def _follow(runner, job_id: str) -> None:
    """Live progress on stderr: trials done / total and the best validation AUC so far."""
    last = None
    while True:
        job = runner.jobs.get(job_id)
        best = job.get("best_auc")
        line = (f"[{job['state']}] trials {job.get('trials_done') or 0}/{job.get('trials_total') or 0}"
                f"  best AUC {best:.4f}" if best is not None else
                f"[{job['state']}] trials {job.get('trials_done') or 0}/{job.get('trials_total') or 0}")
        if line != last:
            print(line, file=sys.stderr, flush=True)
            last = line
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return
        time.sleep(0.25)


def _wait_quietly(runner, job_id: str) -> None:
    try:
        runner.wait(job_id, timeout=120)
    except SeedcoreError as exc:
        print(exc.message, file=sys.stderr)


def _promote(settings: Settings, args) -> int:
    from seedcore.db.database import Database, upgrade
    from seedcore.flywheel import Flywheel

    upgrade(settings.database_url)
    promotion = Flywheel(settings, Database(settings.database_url)).promote(args.version, force=args.force,
                                                                          trigger="manual")
    print(json.dumps(promotion, indent=2, default=str))
    return 0 if promotion["status"] in ("success", "unchanged") else 3


def _redact(url: str) -> str:
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


if __name__ == "__main__":
    sys.exit(main())
