"""`seedcore evaluate`, `seedcore monitors ...`, `seedcore schedules ...`: the flywheel from the command line.

Monitors and schedules live in our SQL database, so the CLI and `seedcore up` see the same ones; a sweep a
CLI check starts is queued there and run by the server's job runner.
"""

from __future__ import annotations

import argparse
import json
import sys

from seedcore.config import Settings
from seedcore.errors import ValidationError


def add_commands(sub) -> None:
    """Add the flywheel commands to the `seedcore` parser's subcommands."""
    evaluate = sub.add_parser("evaluate", help="score a model version (default: production) on labelled data")
    evaluate.add_argument("--data", dest="data_source", help="CSV or Parquet file inside the data dir (default: built-in)")
    evaluate.add_argument("--label-column")
    evaluate.add_argument("--feature-columns", help="comma-separated")
    evaluate.add_argument("--version", type=int)
    evaluate.set_defaults(handler=_evaluate)
    for noun in ("monitors", "schedules"):
        _crud(sub, noun)


def _crud(sub, noun: str) -> None:
    parser = sub.add_parser(noun, help=f"{noun}: list, show, create, update, delete"
                                       + (", check" if noun == "monitors" else ", pause, resume, tick"))
    actions = parser.add_subparsers(required=True, metavar="action")
    actions.add_parser("list", help=f"every one of the {noun}").set_defaults(handler=_run, noun=noun, action="list")
    for action in ("show", "delete") + (("check",) if noun == "monitors" else ("pause", "resume")):
        one = actions.add_parser(action, help=f"{action} one, by id")
        one.add_argument("id")
        one.set_defaults(handler=_run, noun=noun, action=action)
    create = actions.add_parser("create", help="BODY: the JSON body of POST /xgboost/" + noun)
    create.add_argument("body", type=_json_object)
    create.set_defaults(handler=_run, noun=noun, action="create")
    update = actions.add_parser("update", help="BODY: the fields to change, as JSON")
    update.add_argument("id")
    update.add_argument("body", type=_json_object)
    update.set_defaults(handler=_run, noun=noun, action="update")
    if noun == "monitors":
        actions.add_parser("check-all", help="check every enabled monitor now").set_defaults(handler=_run, noun=noun, action="check_all")
    else:
        actions.add_parser("tick", help="start the sweeps that are due now").set_defaults(
            handler=_run, noun=noun, action="tick")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _services(settings: Settings):
    from seedcore.db.database import Database
    from seedcore.db.migrations import upgrade
    from seedcore.monitoring.monitors import MonitorService
    from seedcore.jobs.runner import JobRunner
    from seedcore.monitoring.schedules import ScheduleService

    settings.ensure_dirs()
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    runner = JobRunner(settings, db)  # never started: jobs it queues run in the server's runner

    def submit(request, trigger):
        return runner.submit(request, trigger=trigger)
    return ScheduleService(settings, db, submit, cancel=runner.cancel), MonitorService(settings, db, submit)


def _run(settings: Settings, args) -> int:
    from seedcore.monitoring.monitors import MonitorBody, MonitorPatch
    from seedcore.monitoring.triggers import validate_body
    from seedcore.monitoring.schedules import ScheduleBody, SchedulePatch

    schedules, monitors = _services(settings)
    service = monitors if args.noun == "monitors" else schedules
    body, patch = (MonitorBody, MonitorPatch) if args.noun == "monitors" else (ScheduleBody, SchedulePatch)
    action = args.action
    if action == "list":
        result = service.list()
    elif action == "create":
        result = service.create(validate_body(body, args.body))
    elif action == "update":
        result = service.update(args.id, validate_body(patch, args.body))
    elif action in ("pause", "resume"):
        result = service.update(args.id, SchedulePatch(enabled=action == "resume"))
    elif action in ("show", "delete", "check"):
        result = getattr(service, {"show": "get"}.get(action, action))(args.id)
    elif action in ("check_all", "tick"):
        result = getattr(service, action)()
    else:
        raise ValidationError(f"unknown action {action!r}", field="action")
    print(json.dumps(result, indent=2, default=str))
    return 0


def _evaluate(settings: Settings, args) -> int:
    from seedcore.db.database import Database
    from seedcore.db.migrations import upgrade
    from seedcore.monitoring.evaluate import evaluate_version

    settings.ensure_dirs()
    upgrade(settings.database_url)
    features = args.feature_columns.split(",") if args.feature_columns else None
    db = Database(settings.database_url)
    try:
        result = evaluate_version(settings, db, args.data_source, args.label_column, features, args.version)
    finally:
        db.dispose()
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
    return 0
