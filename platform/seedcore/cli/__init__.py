"""The `seedcore` command: run the platform, tune and train, promote, look at jobs and models, migrate.

Each group of commands lives in its own module with an `add_commands(sub)` function; COMMAND_MODULES lists
them, so a new group is one line there.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

import pydantic

from seedcore.cli.common import CALLER_ERROR, EXIT_CODES, INTERRUPTED, OK, OUR_FAULT, READER_GONE
from seedcore.config import Settings
from seedcore.errors import SeedcoreError
from seedcore.runtime.logs import exit_now
from seedcore.errors import invalid

# Modules that add subcommands (`add_commands(sub)`), in the order --help lists them after this module's own.
COMMAND_MODULES = ("seedcore.cli.tune_train", "seedcore.cli.jobs", "seedcore.cli.monitors", "seedcore.cli.organism",
                   "seedcore.cli.ray_status")


def main(argv: list[str] | None = None) -> int:
    """Run one command; the return value is the exit code (see EXIT_CODES)."""
    try:
        args = build_parser().parse_args(argv)
        settings = Settings.from_env()
        return args.handler(settings, args) or OK
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # `seedcore jobs list | head`: no traceback, as a shell tool that SIGPIPE ends
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is still buffered goes nowhere
        return READER_GONE
    except (SeedcoreError, pydantic.ValidationError) as exc:
        error = invalid(exc) if isinstance(exc, pydantic.ValidationError) else exc
        print(json.dumps(error.to_dict()), file=sys.stderr)
        return CALLER_ERROR if error.status_code < 500 else OUR_FAULT


def run() -> None:
    """The `seedcore` command: main(), then leave at once (seconds of teardown after a sweep saved)."""
    exit_now(main())


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the platform's own commands, then every module's in COMMAND_MODULES."""
    epilog = "exit codes:\n" + "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items())
    parser = argparse.ArgumentParser(prog="seedcore", description=__doc__.splitlines()[0], epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True, metavar="command")
    register_commands(sub)
    return parser


def register_commands(sub) -> None:
    """Add every subcommand: ours (up, serve, db), then each module's `add_commands(sub)`."""
    up = sub.add_parser("up", help="migrate, then run the API, the job runner, local Ray and the MLflow UI")
    _add_address(up)
    up.add_argument("--mlflow-ui-port", type=int, help="MLflow UI port (default: SEEDCORE_MLFLOW_UI_PORT or 5000)")
    up.add_argument("--no-mlflow-ui", action="store_true", help="do not start the MLflow UI")
    up.set_defaults(handler=_up)

    serve = sub.add_parser("serve", help="a predict-only server (no job runner, no Ray)")
    _add_address(serve)
    serve.add_argument("--workers", type=int, default=None, help="default: SEEDCORE_SERVE_WORKERS")
    serve.set_defaults(handler=_serve)

    db = sub.add_parser("db", help="our SQL schema (flashbulb memory, jobs, flywheel tables)")
    db_sub = db.add_subparsers(required=True, metavar="action")
    db_sub.add_parser("upgrade", help="migrate to the latest revision").set_defaults(handler=_db_upgrade)
    down = db_sub.add_parser("downgrade", help="migrate down to REVISION (e.g. base)")
    down.add_argument("revision")
    down.set_defaults(handler=_db_downgrade)
    db_sub.add_parser("current", help="print the current revision").set_defaults(handler=_db_current)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)


def _add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (default: SEEDCORE_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="API port (default: SEEDCORE_PORT or 8000)")


def _with_address(settings: Settings, args) -> Settings:
    """Settings with the --host/--port/--mlflow-ui-port given on the command line (validated as settings)."""
    changes = {name: getattr(args, name) for name in ("host", "port", "mlflow_ui_port")
               if getattr(args, name, None) is not None}
    return settings.replace(**changes) if changes else settings


def _db_upgrade(settings: Settings, args) -> int:
    from seedcore.db.database import current_revision
    from seedcore.db.migrations import upgrade

    settings.ensure_dirs()
    upgrade(settings.database_url)
    print(f"database at revision {current_revision(settings.database_url)} ({_redact(settings.database_url)})")
    return 0


def _db_downgrade(settings: Settings, args) -> int:
    from seedcore.db.database import current_revision
    from seedcore.db.migrations import downgrade

    downgrade(settings.database_url, args.revision)
    print(f"database at revision {current_revision(settings.database_url) or 'base'}")
    return 0


def _db_current(settings: Settings, args) -> int:
    from seedcore.db.database import current_revision
    from seedcore.db.migrations import head_revision

    print(f"current: {current_revision(settings.database_url) or 'base'}  head: {head_revision()}")
    return 0


def _up(settings: Settings, args) -> int:
    from seedcore.runtime.discovery import announced
    from seedcore.server.mlflow_ui import start_mlflow_ui, stop_in_background, stop_process
    from seedcore.server.process import run_api

    settings = _with_address(settings, args)
    _require_writable_database(settings, migrated=False)
    _db_upgrade(settings, args)
    _require_writable_database(settings, migrated=True)
    _init_mlflow_store(settings)
    ui = None if args.no_mlflow_ui else start_mlflow_ui(settings)
    print(f"SeedCore Flywheel API  http://{settings.host}:{settings.port}  (docs: /docs, OpenAPI: /openapi.json)")
    if ui is not None:
        print(f"MLflow UI              http://{settings.host}:{settings.mlflow_ui_port}")
    elif not args.no_mlflow_ui:
        print("MLflow UI              not started (see above)")
    print(f"Tune results           {settings.ray_storage or settings.ray_results_dir.resolve()}")
    print(f"Log file               {settings.log_file.resolve()}  (also on stderr)")
    print(f"data dir {settings.data_dir}; tracking {settings.tracking_uri}; Ctrl-C stops everything", flush=True)
    try:
        with announced(settings):  # `seedcore tune` beside us hands its sweeps to this server
            run_api(settings, role="all", on_stop=lambda: stop_in_background(ui))  # the UI stops beside the API
    finally:
        stop_process(ui)
    return OK


def _require_writable_database(settings: Settings, migrated: bool) -> None:
    """Refuse to start over our database when it cannot take a write: before migrating, a SQLite file (or
    its -wal/-shm, or its directory) that is read-only, or a lost one's WAL left behind; after, a write probe
    (a read-only PostgreSQL too). The server would answer nothing but 503 (DatabaseUnavailableError: exit
    code OUR_FAULT, the reason on stderr)."""
    from seedcore.db.database import Database
    from seedcore.errors import DatabaseUnavailableError

    db = Database(settings.database_url)
    try:
        if migrated:
            db.probe_write()
        else:
            db.require_usable()
    except DatabaseUnavailableError as exc:
        raise DatabaseUnavailableError(f"not starting: {exc.message}") from exc
    finally:
        db.dispose()


def _init_mlflow_store(settings: Settings) -> None:
    """Create MLflow's tables once, here: the MLflow UI and the API worker would otherwise both migrate
    a fresh store at the same moment, and the loser fails to boot."""
    if settings.tracking_uri.startswith(("http://", "https://")):
        return  # a tracking server owns its store
    from seedcore.promotion.registry import Registry
    from seedcore.runtime.store_health import mlflow_file_problem

    problem = mlflow_file_problem(settings)
    try:
        if problem is None:
            Registry(settings).client.search_experiments(max_results=1)
    except SeedcoreError as exc:
        problem = exc.message
    if problem:  # still start: serving falls back to the verified blessed file and /health says why
        print(f"warning: {problem}; writes that need MLflow answer 503, and serving falls back to the blessed "
              "model file if the registry cannot be read (see /health)", file=sys.stderr, flush=True)


def _serve(settings: Settings, args) -> int:
    from seedcore.server.process import run_api

    settings = _with_address(settings, args)
    _init_mlflow_store(settings)  # several workers would otherwise race to create a fresh store's tables
    workers = args.workers or settings.serve_workers
    print(f"SeedCore serving  http://{settings.host}:{settings.port}  ({workers} workers)", flush=True)
    run_api(settings, role="serve", workers=workers)
    return 0


def _redact(url: str) -> str:
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
