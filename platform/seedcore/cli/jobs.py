"""`seedcore promote|jobs|models`: promote a registered version, look at jobs (list, show, cancel) and at
registered versions (list, show)."""

from __future__ import annotations

import sys

from seedcore.cli.common import OK, PROMOTION_REJECTED, print_json, print_table
from seedcore.config import Settings
from seedcore.db.tables_jobs import JOB_STATES
from seedcore.vocabulary import PromotionStatus


def add_commands(sub) -> None:
    """Add promote, jobs and models to the `seedcore` subcommands."""
    promote = sub.add_parser("promote", help="promote a registered version through the champion gate")
    promote.add_argument("--version", type=int, required=True)
    promote.add_argument("--force", action="store_true", help="promote even if the champion is better")
    promote.add_argument("--allow-schema-change", action="store_true",
                         help="promote even if the version was trained on other feature names than production's")
    promote.set_defaults(handler=_promote)

    jobs = sub.add_parser("jobs", help="jobs (sweeps and trainings): list, show ID, cancel ID")
    actions = jobs.add_subparsers(required=True, metavar="action")
    listing = actions.add_parser("list", help="newest first")
    listing.add_argument("--state", choices=JOB_STATES)
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true", help="the page as JSON instead of a table")
    listing.set_defaults(handler=_jobs_list)
    for action, handler, what in (("show", _jobs_show, "one job as JSON"),
                                  ("cancel", _jobs_cancel, "stop a queued or running job (its runs KILLED)")):
        one = actions.add_parser(action, help=what)
        one.add_argument("job_id")
        one.set_defaults(handler=handler)

    models = sub.add_parser("models", help="registered versions: list, show N")
    actions = models.add_subparsers(required=True, metavar="action")
    listing = actions.add_parser("list", help="newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true", help="the page as JSON instead of a table")
    listing.set_defaults(handler=_models_list)
    show = actions.add_parser("show", help="one version as JSON (metrics, parameters, data, aliases)")
    show.add_argument("version", type=int)
    show.set_defaults(handler=_models_show)


def _promote(settings: Settings, args) -> int:
    from seedcore.db.migrations import upgrade
    from seedcore.organism.energy import EnergyMeter
    from seedcore.promotion.service import PromotionService

    upgrade(settings.database_url)
    with PromotionService.opened(settings) as service:
        meter = EnergyMeter(settings, service.db, service.registry)
        service.add_to_payload(meter.at_promotion)  # the model's bytes in the promotion's incident
        service.subscribe(meter.on_promoted)  # the ledger keeps what it replaced
        promotion = service.promote(args.version, force=args.force, trigger="manual",
                                    allow_schema_change=args.allow_schema_change)
    print_json(promotion)
    return OK if promotion["status"] in (PromotionStatus.SUCCESS, PromotionStatus.UNCHANGED) else PROMOTION_REJECTED


def _job_store(settings: Settings):
    from seedcore.db.database import Database
    from seedcore.jobs.store import JobStore

    database = Database(settings.database_url)
    database.check_schema()
    return JobStore(database)


def _jobs_list(settings: Settings, args) -> int:
    page = _job_store(settings).list(limit=args.limit, state=args.state)
    if args.json:
        print_json(page)
        return OK
    rows = [(j["id"], j["kind"], j["trigger"], j["state"], f"{j['trials_done']}/{j['trials_total']}",
             "" if j["best_auc"] is None else f"{j['best_auc']:.4f}", j["experiment_name"] or "", j["created_at"])
            for j in page["items"]]
    print_table(("job", "kind", "trigger", "state", "trials", "best AUC", "experiment", "created"), rows)
    print(f"{len(rows)} of {page['total']}", file=sys.stderr)
    return OK


def _jobs_show(settings: Settings, args) -> int:
    print_json(_job_store(settings).get(args.job_id))
    return OK


def _jobs_cancel(settings: Settings, args) -> int:
    """Cancel through the database: whichever process runs the job sees it at its next progress report."""
    job = _job_store(settings).request_cancel(args.job_id)
    print(f"job {job['id']}: {job['state']}" + (" (cancel requested)" if job["state"] == "running" else ""))
    return OK


def _models_list(settings: Settings, args) -> int:
    from seedcore.promotion.registry import Registry

    page = Registry(settings).list_versions(limit=args.limit)
    if args.json:
        print_json(page)
        return OK
    rows = [(v["version"], ",".join(v["aliases"]), v["stage"], _auc(v["holdout"]), _auc(v["validation"]),
             v["experiment_name"] or "", v["created_at"]) for v in page["items"]]
    print_table(("version", "aliases", "stage", "holdout AUC", "valid AUC", "experiment", "created"), rows)
    print(f"{len(rows)} of {page['total']} versions of {settings.model_name}", file=sys.stderr)
    return OK


def _models_show(settings: Settings, args) -> int:
    from seedcore.promotion.registry import Registry

    registry = Registry(settings)
    print_json(registry.describe(registry.get_version(args.version)))
    return OK


def _auc(metrics: dict) -> str:
    value = metrics.get("auc")
    return "" if value is None else f"{value:.4f}"
