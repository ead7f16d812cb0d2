"""The promotion journal: a promotion's intent is written before its first step and each step after it; a
`seedcore promote` killed with SIGKILL part-way is settled when the API starts, so alias, stage and blessed
files agree, and the next promotion does not wait for the dead one's lock. A version trained on other
features than production's is refused unless `allow_schema_change`. Real MLflow (SQLite), real files, real
processes and signals; the kill points are reached with the stores' own write locks (bench/promotion_crash.py).
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
import xgboost as xgb

from _flywheel import add_version, promotion_incidents
from seedcore import names
from seedcore.datasets import load_dataset
from seedcore.db.database import Database
from seedcore.errors import RegistryUnavailableError
from seedcore.scoring import evaluate
from seedcore.promotion.journal import STEPS, PromotionJournal
from seedcore.promotion.model_logging import Candidate
from seedcore.promotion.registry import Registry, ensure_experiment
from seedcore.services import services_of

from bench.promotion_crash import agreement, crash_round

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
# our SQL database on both backends (conftest's `settings` reads `sql_backend`); MLflow's store stays SQLite
ON_BOTH = pytest.mark.parametrize("sql_backend", ["sqlite", "postgresql"])


def promote(client, version: int, **body):
    return client.post("/xgboost/promote", json={"version": version, "force": True, **body})


def journal(settings) -> list[dict]:
    database = Database(settings.database_url)
    try:
        return PromotionJournal(database).recent(settings.model_name)
    finally:
        database.dispose()


@ON_BOTH
def test_a_promotion_journals_its_intent_then_every_step(client, migrated_settings):
    settings, registry = migrated_settings, Registry(migrated_settings)
    v1, _ = add_version(settings, registry, seed=1, promote=False)
    v2, _ = add_version(settings, registry, seed=2, depth=3, promote=False)
    first = promote(client, v1).get_json()
    second = promote(client, v2).get_json()
    assert first["status"] == second["status"] == "success"
    newest, oldest = journal(settings)
    assert (oldest["id"], newest["id"]) == (first["promotion_id"], second["promotion_id"])
    assert newest["state"] == oldest["state"] == "completed"
    assert newest["steps"] == list(STEPS)  # every step, in order
    assert (newest["version"], newest["previous_version"], oldest["previous_version"]) == (v2, v1, None)
    assert (newest["alias"], newest["stage"]) == (names.PRODUCTION_ALIAS, names.PRODUCTION_STAGE)
    assert newest["blessed_link"] == str(settings.blessed_dir)
    assert newest["blessed_dir"] == os.readlink(settings.blessed_dir)
    assert newest["previous_blessed_dir"] == oldest["blessed_dir"]
    assert newest["detail"]["production_before"] == [v1] and newest["detail"]["incident_id"] == second["incident_id"]
    assert newest["detail"]["context"]["trigger"] == "api" and newest["owner"].startswith(f"{os.uname().nodename}:")
    assert newest["finished_at"] >= newest["created_at"]
    # re-promoting production changes nothing and journals nothing
    assert promote(client, v2).get_json()["status"] == "unchanged" and len(journal(settings)) == 2


def test_a_registry_that_refuses_writes_mid_promotion_is_rolled_back_and_journalled(client, migrated_settings):
    """The MLflow store's write lock held by another process outlasts MLflow's busy timeout: the alias write
    fails after the blessed link was switched. The files switch back and the row says rolled_back.

    The app's promotion service is called directly: through the API, the guard's write probe (run when its
    last one is older than PROBE_TTL_S, as on a loaded machine) answers the same 503 before the promotion
    begins, which tests/runtime/test_store_health.py covers, and the mid-promotion failure is never reached."""
    settings, registry = migrated_settings, Registry(migrated_settings)
    v1, _ = add_version(settings, registry, seed=1, promote=False)
    v2, _ = add_version(settings, registry, seed=2, depth=3, promote=False)
    assert promote(client, v1).get_json()["status"] == "success"
    link_before = os.readlink(settings.blessed_dir)
    store = sqlite3.connect(settings.mlruns_dir / "mlflow.db", isolation_level=None, timeout=30)
    store.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(RegistryUnavailableError, match="locked") as refused:
            services_of(client.application).promotion.promote(v2, force=True, trigger="api")
    finally:
        store.execute("ROLLBACK")
        store.close()
    assert refused.value.status_code == 503
    failed = journal(settings)[0]
    assert failed["version"] == v2 and failed["state"] == "rolled_back" and "blessed" in failed["steps"]
    assert os.readlink(settings.blessed_dir) == link_before
    assert not (settings.models_dir / failed["blessed_dir"]).exists()
    state = agreement(settings)
    assert state["agree"] and state["alias"] == v1
    assert promote(client, v2).get_json()["status"] == "success" and agreement(settings)["alias"] == v2


@pytest.fixture
def crash_store(migrated_settings):
    """Two registered versions, the first promoted (the crash rounds promote them in turn)."""
    settings, registry = migrated_settings, Registry(migrated_settings)
    v1, _ = add_version(settings, registry, seed=1, promote=False)
    v2, _ = add_version(settings, registry, seed=2, depth=3, promote=False)
    database = Database(settings.database_url)
    try:
        from seedcore.promotion.service import PromotionService

        assert PromotionService(settings, database).promote(v1, force=True)["status"] == "success"
    finally:
        database.dispose()
    return settings, (v1, v2)


# (where the promoter is killed, what the stores said then): the kill landed mid-promotion
ROUNDS = [
    (("prepared", "race"), lambda seen, target: seen["alias"] != target),
    (("alias", "lag"), lambda seen, target: seen["alias"] == target and seen["production_stage"] != [target]),
    (("archived", "lead"), lambda seen, target: seen["alias"] == target and seen["production_stage"] == []),
    (("described", "race"), lambda seen, target: seen["production_stage"] == [target]),
]


@ON_BOTH
def test_kill_9_at_steps_of_a_promotion_then_restart_agrees_and_promotes_at_once(crash_store, tmp_path):
    settings, versions = crash_store
    for position, landed in ROUNDS:
        result = crash_round(settings, versions, position, tmp_path / "promoter.log")
        seen, target = result["killed_registry"], result["target"]
        assert result["killed_state"] == "open" and landed(seen, target), result  # killed part-way
        after = result["after_restart"]
        assert result["agree_after_restart"], result  # alias, stage Production and blessed files: one version
        assert result["served_after_restart"] == after["alias"]
        forward = result["settled"] == "rolled_forward"
        assert result["settled"] == ("rolled_forward" if after["alias"] == target else "rolled_back"), result
        if position != ("prepared", "race"):
            assert forward  # its blessed link was switched before the kill
        promotion_id = next(row["id"] for row in journal(settings) if row["version"] == target
                            and row["state"] in ("rolled_forward", "rolled_back"))
        recorded = [i for i in promotion_incidents(settings) if i["payload"].get("promotion_id") == promotion_id]
        assert len(recorded) == (1 if forward else 0), recorded  # once, even when the kill came after it
        # the first promotion after the restart takes the dead promoter's lock at once
        assert result["first_promote"]["status"] == "success" and result["agree_after_promote"], result
        assert result["first_promote_s"] < settings.promotion_lock_timeout_s / 3, result


def _version_on(settings, registry, features: list[str]) -> int:
    dataset = load_dataset(settings.data_dir, None, None, features)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(dataset.x_train, label=dataset.y_train, feature_names=features), 5)
    run_id = registry.client.create_run(ensure_experiment(registry.client, settings, "schema")).info.run_id
    candidate = Candidate(booster, {}, dataset, evaluate(booster, dataset.x_valid, dataset.y_valid), run_id, "schema")
    return int(registry.register(candidate).version)


@ON_BOTH
def test_a_version_on_other_features_is_refused_unless_the_change_is_allowed(client, migrated_settings, monkeypatch,
                                                                            capsys):
    from seedcore.cli import main

    settings, registry = migrated_settings, Registry(migrated_settings)
    full, _ = add_version(settings, registry, seed=1, promote=False)
    narrow = _version_on(settings, registry, [f"f{i}" for i in range(9)])
    assert promote(client, full).get_json()["status"] == "success"

    bad = promote(client, narrow, allow_schema_change="yes")
    assert bad.status_code == 400 and bad.get_json()["field"] == "allow_schema_change"
    refused = promote(client, narrow)
    assert refused.status_code == 409
    body = refused.get_json()
    assert body["field"] == "allow_schema_change" and "removed ['f9']" in body["error"]
    assert f"production version {full}" in body["error"] and "allow_schema_change: true" in body["error"]
    state = agreement(settings)
    assert state["agree"] and state["alias"] == full  # nothing moved, nothing journalled
    assert [row["version"] for row in journal(settings)] == [full]
    assert [i["model_version"] for i in promotion_incidents(settings)] == [str(full)]

    monkeypatch.setenv("SEEDCORE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SEEDCORE_MLRUNS_DIR", str(settings.mlruns_dir))
    assert main(["promote", "--version", str(narrow), "--force"]) == 2  # a caller's error
    assert "removed ['f9']" in capsys.readouterr().err

    allowed = promote(client, narrow, allow_schema_change=True).get_json()
    assert allowed["status"] == "success" and allowed["schema_change"]["removed"] == ["f9"]
    incident = promotion_incidents(settings)[-1]
    assert incident["model_version"] == str(narrow) and incident["payload"]["allow_schema_change"] is True
    assert incident["payload"]["schema_change"]["production_features"] == [f"f{i}" for i in range(10)]

    assert main(["promote", "--version", str(full), "--force", "--allow-schema-change"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "success" and printed["schema_change"]["added"] == ["f9"]
    state = agreement(settings)
    assert state["agree"] and state["alias"] == full
    assert promotion_incidents(settings)[-1]["payload"]["allow_schema_change"] is True
