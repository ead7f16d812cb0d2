"""`seedcore history`, `seedcore evolution`: long-term memory and the evolution axes from the command line;
`seedcore evolution baseline JOB_ID --kind random_search|cold_start` runs a sweep's baseline.

The first two read the registry (MLflow) and our SQL database directly, as `GET /xgboost/history` and
`GET /xgboost/evolution` do; no server needs to run. A baseline is a sweep, run as `seedcore tune` runs one:
handed to a running `seedcore up` sharing the database (`POST /xgboost/evolution/baselines`), else (or with
`--here`) in this process; followed with live progress, its result printed.
"""

from __future__ import annotations

import sys

from seedcore.cli.common import OK, print_json, print_table
from seedcore.config import Settings
from seedcore.vocabulary import Baseline, values


def add_commands(sub) -> None:
    """Add history and evolution to the `seedcore` subcommands."""
    history = sub.add_parser("history", help="every version newest first: configuration, data fingerprint, holdout "
                                             "and live metrics over time, trigger, energy")
    history.add_argument("--limit", type=int, default=20, help="versions on the page (1 to 100)")
    history.add_argument("--offset", type=int, default=0)
    history.add_argument("--json", action="store_true", help="the page as JSON instead of a table")
    history.set_defaults(handler=_history)
    evolution = sub.add_parser("evolution", help="accuracy, smartness and adaptability of every sweep, oldest first",
                               description="With no action: accuracy, smartness and adaptability of every sweep, "
                                           "oldest first. `baseline`: run a baseline of a sweep to measure it against.")
    evolution.add_argument("--json", action="store_true", help="the answer as JSON instead of a table")
    evolution.set_defaults(handler=_evolution)
    action = evolution.add_subparsers(metavar="action", required=False)
    baseline = action.add_parser(
        "baseline", help="run a baseline of a succeeded sweep, a whole sweep of the same size (same data, space, "
                         "num_samples, seed; warm start off, nothing promoted): in a running `seedcore up` sharing "
                         "the database, else here; prints its result. Evolution then measures the sweep against it")
    baseline.add_argument("job_id", metavar="JOB_ID", help="the sweep's job id")
    baseline.add_argument("--kind", required=True, choices=values(Baseline),
                          help="random_search: the same sweep as a random search (smartness); cold_start: the same "
                               "warm-started sweep with warm start off (adaptability)")
    baseline.add_argument("--here", action="store_true", help="run it in this process (its own Ray) even when a "
                                                              "`seedcore up` server shares the database")
    baseline.set_defaults(handler=_baseline)


def _database(settings: Settings):
    from seedcore.db.database import Database
    from seedcore.db.migrations import upgrade

    settings.ensure_dirs()
    upgrade(settings.database_url)
    return Database(settings.database_url)


def _history(settings: Settings, args) -> int:
    from seedcore.api.schemas_organism import HistoryQuery
    from seedcore.memory.history import history
    from seedcore.promotion.registry import Registry

    query = HistoryQuery(limit=args.limit, offset=args.offset)  # 1..100, >= 0: a 400-like error naming the field
    page = history(Registry(settings), _database(settings), query.limit, query.offset)
    if args.json:
        print_json(page)
        return OK
    items = page["items"]
    rows = [(i["version"], i["trigger"] or "", _num((i["holdout"] or {}).get("auc")),
             _num(i["live"][-1]["auc"]) if i["live"] else "", (i["dataset"] or {}).get("fingerprint", "")[:12],
             _num((i["energy"] or {}).get("joules")), i["promoted_at"] or "") for i in items]
    print_table(("version", "trigger", "holdout AUC", "live AUC (last day)", "data", "sweep J", "promoted"), rows)
    print(f"{len(rows)} of {page['total']}", file=sys.stderr)
    return OK


def _evolution(settings: Settings, args) -> int:
    from seedcore.organism.evolution import Evolution

    answer = Evolution(settings, _database(settings)).measure()
    if args.json:
        print_json(answer)
        return OK
    rows = [(s["version"], s["trigger"] or "", _num(s["holdout_auc"]), _num((s.get("accuracy") or {}).get("live_auc_now")),
             s["trials"], s["trials_to_99"] or "", _num(s["curve_area"]), _num(s["smartness"]), s["smartness_baseline"],
             s["warm_start"], _num(s["trials_saved"]), s["adaptability_baseline"] or "") for s in answer["sweeps"]]
    print_table(("version", "trigger", "holdout AUC", "live AUC", "trials", "to 99%", "curve area", "smartness",
                 "against", "warm start", "trials saved", "against"), rows)
    return OK


def _baseline(settings: Settings, args) -> int:
    """Hand the baseline to a running server (`POST /xgboost/evolution/baselines`), or build its request from
    the sweep's job row and run it here, as `seedcore tune` and `tune --here` do."""
    from seedcore.cli.tune_train import follow_remote, run_here
    from seedcore.db.tables_jobs import KIND_TUNE

    if not args.here:
        from seedcore.runtime.discovery import call, find_server

        server = find_server(settings)
        if server is not None:
            status, job = call("POST", f"{server}/xgboost/evolution/baselines",
                               {"job_id": args.job_id, "kind": args.kind}, token=settings.api_token)
            return follow_remote(settings, server, status, job)
    from seedcore.jobs.store import JobStore
    from seedcore.organism.baselines import baseline_request

    request, trigger = baseline_request(settings, JobStore(_database(settings)).get(args.job_id), args.kind)
    return run_here(settings, KIND_TUNE, request, trigger=trigger)


def _num(value) -> str:
    return "" if value is None else f"{value:.4f}"
