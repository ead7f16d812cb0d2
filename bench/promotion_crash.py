"""Promotion crash recovery: `kill -9` of a real `seedcore promote` at a random step, then a restart.

Each round runs `python -m seedcore.cli promote --version N --force` in its own process and kills it with
SIGKILL at one point of its promotion, chosen at random from POSITIONS. The points are reached with the
stores' own write locks, no hook in the product: holding the MLflow store's (SQLite) write lock stops the
promoter before its next registry write; holding our database's (SQLite's write lock, or on PostgreSQL the
journal table locked against writes) stops it before its next journal write. Alternating the two walks it
step by step: "lag" = the step is done in the store but not yet journalled, "lead" = it is journalled and
the next step not begun. The first points (the intent and the blessed directory being written) come before
any registry write; there it is killed as soon as the journal row shows the step, so where it really was
is read back from the row afterwards.

Then the restart: the API is built (`create_app`, which settles an interrupted promotion as it starts) and
the stores are read: alias `production`, the versions in stage Production and the verified blessed files
must name one version, with no journal row left open. Then the first promotion after the restart (the
other version, through POST /xgboost/promote) is timed: it must not wait for the dead promoter's lock.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bench._report import Section, log, median
from bench._workspace import Workspace, mlflow_state
from seedcore.services import services_of

NAME = "promotion_crash"
TITLE = "Promotion crash recovery: kill -9 at a random step, then restart"
ROUNDS, SMALL_ROUNDS = 20, 3
FIRST_PROMOTE_TARGET_S = 2.0
SEED = 20261205
# Where a promotion is killed: (journal step, how). The registry steps in order, each "lag" and "lead".
REGISTRY_STEPS = ("alias", "archived", "stage", "tagged", "described")
POSITIONS = (("intent", "race"), ("prepared", "race"), ("blessed", "lead"),
             *((step, how) for step in REGISTRY_STEPS[:-1] for how in ("lag", "lead")),
             ("described", "lag"), ("described", "race"))
WAIT_S = 180.0  # for the promoter to reach a point (it imports MLflow and runs the gate first)


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    rounds = repeats or (SMALL_ROUNDS if small else ROUNDS)
    settings, versions = crash_store(ws, NAME)
    baseline = [timed_promote(settings, v)[0] for v in (versions[1], versions[0], versions[1])]
    rng = random.Random(SEED)
    results = []
    for index in range(rounds):
        position = rng.choice(POSITIONS)
        outcome = crash_round(settings, versions, position, ws.root / f"{NAME}-round-{index}.log")
        log(f"{NAME}: round {index + 1}/{rounds} at {position[0]}/{position[1]}: killed after "
            f"{outcome['killed_steps']}, {outcome['settled']}, agree={outcome['agree_after_restart']}, "
            f"first promote {outcome['first_promote_s']:.2f} s")
        results.append(outcome)
    agreed = sum(r["agree_after_restart"] and r["agree_after_promote"] for r in results)
    first = [r["first_promote_s"] for r in results]
    setup = (f"{rounds} rounds on one SQLite MLflow store and SQLite database, the built-in dataset, two registered "
             f"versions promoted in turn. Each round: `python -m seedcore.cli promote --version N --force` killed with "
             f"SIGKILL at a random point (seed {SEED}; points reached with the stores' own write locks), then "
             "`create_app` (settles the journal) and the stores compared; then POST /xgboost/promote of the other "
             "version, timed. Peer: the same promotion on the same store with no crash before it.")
    section = Section(NAME, TITLE, setup)
    section.add("rounds whose alias, stage and blessed files agree after restart", agreed, target=f">= {rounds}",
                unit="rounds")
    section.add("slowest first promote after restart", max(first), target=f"<= {FIRST_PROMOTE_TARGET_S:g}", unit="s")
    section.add("first promote after restart (median)", median(first), median(baseline),
                "an uninterrupted promotion", unit="s")
    section.add("restart: create_app, settling included (median)", median(r["restart_s"] for r in results), unit="s")
    forward = sum(r["settled"] == "rolled_forward" for r in results)
    back = sum(r["settled"] == "rolled_back" for r in results)
    section.notes.append(f"settled: {forward} rolled forward, {back} rolled back, "
                         f"{rounds - forward - back} finished before the kill landed")
    section.notes.append("points: " + ", ".join(f"{r['position']} (journal then: {r['killed_steps']})"
                                                for r in results))
    section.notes.append("first promote after restart: " + ", ".join(f"{s:.2f}" for s in first) + " s; uninterrupted: "
                         + ", ".join(f"{s:.2f}" for s in baseline) + " s")
    return section


# -- the store -----------------------------------------------------------------------------------
def crash_store(ws: Workspace, name: str) -> tuple:
    """Settings of a fresh store with two registered versions (different models), the first in production."""
    settings = ws.ours(name, promotion_lock_timeout_s=30.0)
    return settings, register_two_versions(settings)


def register_two_versions(settings) -> tuple[int, int]:
    import xgboost as xgb

    from seedcore.datasets import load_dataset
    from seedcore.db.database import Database
    from seedcore.promotion.service import PromotionService
    from seedcore.scoring import evaluate
    from seedcore.promotion.model_logging import Candidate
    from seedcore.promotion.registry import Registry, ensure_experiment

    dataset = load_dataset(settings.data_dir)
    versions = []
    with mlflow_state():
        registry = Registry(settings)
        experiment = ensure_experiment(registry.client, settings, NAME)
        for depth in (2, 4):
            params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "nthread": 1, "seed": depth}
            booster = xgb.train(params, xgb.DMatrix(dataset.x_train, label=dataset.y_train,
                                                    feature_names=list(dataset.feature_names)), 10)
            run_id = registry.client.create_run(experiment).info.run_id
            candidate = Candidate(booster, params, dataset, evaluate(booster, dataset.x_valid, dataset.y_valid),
                                  run_id, NAME)
            versions.append(int(registry.register(candidate).version))
            registry.client.set_terminated(run_id)
    db = Database(settings.database_url)
    try:
        PromotionService(settings, db).promote(versions[0], force=True, trigger="bench")
    finally:
        db.dispose()
    return tuple(versions)


# -- one round -------------------------------------------------------------------------------------
# A "race" point is not held by a lock: after "described" the promoter's last two writes (its incident and the
# journal's close) race the kill. On a loaded machine the promoter can win (seen in a full test run): such a kill
# crashed nothing, and the next promotion, of the other version, is killed instead, up to this many tries in all.
RACE_TRIES = 4


def crash_round(settings, versions: tuple[int, int], position: tuple[str, str], log_path: Path) -> dict:
    """Kill a promotion of the version not in production at `position`, restart, compare, promote again."""
    for _ in range(RACE_TRIES if position[1] == "race" else 1):
        before = agreement(settings)
        target = versions[1] if before["alias"] == versions[0] else versions[0]
        killed = kill_promotion_at(settings, target, position, log_path)
        if killed["state"] != "completed":
            break
    started = time.perf_counter()
    app = _start_app(settings)
    try:
        restart_s = time.perf_counter() - started
        after = agreement(settings)
        served = services_of(app).model.model
        other = versions[1] if after["alias"] == versions[0] else versions[0]
        took, body = timed_request(app, other)
        promoted = agreement(settings)
    finally:
        _stop_app(app)
    return {"position": "/".join(position), "target": target, "killed_steps": killed["steps"],
            "killed_state": killed["state"], "killed_registry": killed["registry"],
            "settled": settled_as(settings, killed["id"]), "after_restart": after,
            "served_after_restart": getattr(served, "version", None),
            "agree_after_restart": after["agree"], "restart_s": restart_s,
            "first_promote_s": took, "first_promote": body, "after_promote": promoted,
            "agree_after_promote": promoted["agree"] and promoted["alias"] == other and body.get("status") == "success"}


def kill_promotion_at(settings, version: int, position: tuple[str, str], log_path: Path) -> dict:
    """Run `seedcore promote` for `version` in a process of its own, SIGKILL it at `position` and wait for it.

    Returns its journal row as the kill left it ({"id", "steps", "state"}) and what the registry said then."""
    step, how = position
    if position not in POSITIONS:
        raise ValueError(f"unknown position {position!r}")
    from seedcore.db.database import Database

    db = Database(settings.database_url)
    mlflow_db = _sqlite_path(settings.tracking_uri)
    known = {row[0] for row in _journal_rows(db, settings.model_name)}
    registry_lock, journal_lock = WriteLock(mlflow_db), JournalLock(db)
    watcher = sqlite3.connect(mlflow_db, isolation_level=None, timeout=30)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDCORE_")}
    env.update(SEEDCORE_DATA_DIR=str(settings.data_dir), SEEDCORE_MLRUNS_DIR=str(settings.mlruns_dir),
               SEEDCORE_DATABASE_URL=settings.database_url)
    registry_lock.hold()  # nothing passes the first registry write until this says so
    with open(log_path, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "seedcore.cli", "promote", "--version", str(version),
                                    "--force"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        row = lambda: _new_row(db, settings.model_name, known)  # noqa: E731
        if how == "race" and step in ("intent", "prepared"):
            _wait(lambda: row() is not None and (step == "intent" or step in row()["steps"]), process, log_path)
        else:
            _wait(lambda: row() is not None and "blessed" in row()["steps"], process, log_path)
            for done in REGISTRY_STEPS if position != ("blessed", "lead") else ():
                # lag: let the next registry write through; the journal write after it waits
                journal_lock.hold()
                seen = _data_version(watcher)
                registry_lock.release()
                _wait(lambda: _data_version(watcher) != seen, process, log_path)
                if position == (done, "lag"):
                    break
                # lead: let the journal write through; the registry write after it waits (after "described"
                # come the incident and the journal's close, both ours: that point is a race)
                registry_lock.hold()
                journal_lock.release()
                _wait(lambda: done in (row() or {}).get("steps", []), process, log_path)
                if position in ((done, "lead"), (done, "race")):
                    break
        process.send_signal(signal.SIGKILL)
        process.wait(60)
        found = row() or {"id": None, "steps": [], "state": None}
        return {**found, "registry": _registry_state(settings, version)}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(60)
        registry_lock.release()
        journal_lock.release()
        watcher.close()
        db.dispose()


class JournalLock:
    """What stops our database's next journal write, held until released: SQLite's write lock (BEGIN
    IMMEDIATE) or, on PostgreSQL, the journal table locked against writes (reads go on)."""

    def __init__(self, db):
        self.db = db
        self.held = None

    def hold(self) -> None:
        if self.held is not None:
            return
        if self.db.dialect == "sqlite":
            self.held = WriteLock(Path(self.db.url.database))
            self.held.hold()
        else:
            from sqlalchemy import text

            connection = self.db.engine.connect()
            connection.execute(text("LOCK TABLE promotion_journal IN EXCLUSIVE MODE"))
            self.held = connection

    def release(self) -> None:
        if isinstance(self.held, WriteLock):
            self.held.release()
        elif self.held is not None:
            self.held.rollback()
            self.held.close()
        self.held = None


class WriteLock:
    """A real SQLite write lock on a database file (BEGIN IMMEDIATE), held until released."""

    def __init__(self, path: Path):
        self.path = path
        self.connection: sqlite3.Connection | None = None

    def hold(self) -> None:
        if self.connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            connection.execute("BEGIN IMMEDIATE")
            self.connection = connection

    def release(self) -> None:
        if self.connection is not None:
            self.connection.execute("ROLLBACK")
            self.connection.close()
            self.connection = None


# -- reading the stores ------------------------------------------------------------------------------
def agreement(settings) -> dict:
    """Alias, stage Production and blessed files: which version each names, and whether they agree (with no
    journal row left open)."""
    import warnings

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from seedcore import names
    from seedcore.promotion.blessed import BlessedFileError, read_blessed

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    try:
        alias = int(client.get_model_version_by_alias(settings.model_name, names.PRODUCTION_ALIAS).version)
    except MlflowException:
        alias = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        stages = {int(mv.version): mv.current_stage
                  for mv in client.search_model_versions(f"name = '{settings.model_name}'")}
    production = sorted(v for v, stage in stages.items() if stage == names.PRODUCTION_STAGE)
    try:
        blessed = read_blessed(settings.blessed_dir).version
    except BlessedFileError:
        blessed = None
    open_rows = sum(state == "open" for _, _, state in _journal_rows_of(settings))
    return {"alias": alias, "production_stage": production, "blessed": blessed, "open_journal_rows": open_rows,
            "agree": alias is not None and production == [alias] and blessed == alias and open_rows == 0}


def settled_as(settings, entry_id: str | None) -> str:
    """How the killed promotion's journal row ended: rolled_forward, rolled_back, completed, or none."""
    if entry_id is None:
        return "none"
    for row_id, _, state in _journal_rows_of(settings):
        if row_id == entry_id:
            return state
    return "none"


def timed_promote(settings, version: int) -> tuple[float, dict]:
    """A promotion through the API of a fresh app (not timed: building it), the request timed."""
    app = _start_app(settings)
    try:
        return timed_request(app, version)
    finally:
        _stop_app(app)


def timed_request(app, version: int) -> tuple[float, dict]:
    client = app.test_client()
    started = time.perf_counter()
    response = client.post("/xgboost/promote", json={"version": version, "force": True})
    return time.perf_counter() - started, response.get_json()


def _start_app(settings):
    from seedcore.api import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    return app


def _stop_app(app) -> None:
    services_of(app).stop()


def _registry_state(settings, version: int) -> dict:
    state = agreement(settings)
    return {"alias": state["alias"], "production_stage": state["production_stage"], "blessed": state["blessed"],
            "target": version}


def _journal_rows(db, model: str) -> list[tuple[str, list, str]]:
    """The model's journal rows, oldest first: (id, steps, state)."""
    from seedcore.promotion.journal import PromotionJournal

    return [(row["id"], row["steps"], row["state"]) for row in PromotionJournal(db).recent(model, limit=1000)][::-1]


def _journal_rows_of(settings) -> list[tuple[str, list, str]]:
    from seedcore.db.database import Database

    db = Database(settings.database_url)
    try:
        return _journal_rows(db, settings.model_name)
    finally:
        db.dispose()


def _new_row(db, model: str, known: set[str]) -> dict | None:
    for row_id, steps, state in _journal_rows(db, model):
        if row_id not in known:
            return {"id": row_id, "steps": steps, "state": state}
    return None


def _data_version(connection: sqlite3.Connection) -> int:
    """Changes whenever another connection commits to the database (SQLite's own counter)."""
    return connection.execute("PRAGMA data_version").fetchone()[0]


def _wait(predicate, process: subprocess.Popen, log_path: Path, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise RuntimeError(f"the promoter exited ({process.returncode}) before the kill point: "
                               f"{log_path.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the promoter did not reach the kill point within {timeout:g} s")
        time.sleep(0.002)


def _sqlite_path(url: str) -> Path:
    from sqlalchemy.engine import make_url

    return Path(make_url(url).database)
