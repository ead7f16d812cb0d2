"""Migration 0007 up and down, on SQLite and PostgreSQL: the ledger's tables and the estimated_auc metric."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from _pg import db_url  # noqa: F401  (fixture)
from seedcore.db.database import Database, current_revision
from seedcore.db.migrations import downgrade, upgrade

pytestmark = pytest.mark.integration
INSERT = ("INSERT INTO monitors (id, name, metric, min_samples, \"window\", cooldown_s, tune, enabled, created_at) "
          "VALUES (:id, :id, :metric, 1, '{}', 1.0, '{}', :yes, CURRENT_TIMESTAMP)")


def _monitor(database: Database, ident: str, metric: str) -> None:
    with database.engine.begin() as connection:
        connection.execute(text(INSERT), {"id": ident, "metric": metric, "yes": True})


def test_0007_adds_the_ledger_and_the_metric_and_takes_them_back(db_url):  # noqa: F811
    upgrade(db_url)
    database = Database(db_url)
    try:
        assert {"energy_jobs", "energy_versions"} <= set(inspect(database.engine).get_table_names())
        _monitor(database, "a" * 32, "estimated_auc")
        _monitor(database, "b" * 32, "live_auc")
        with pytest.raises(IntegrityError):
            _monitor(database, "c" * 32, "made_up_metric")  # the constraint was rebuilt, not dropped
    finally:
        database.dispose()

    downgrade(db_url, "0006")
    database = Database(db_url)
    try:
        assert current_revision(db_url) == "0006"
        assert not {"energy_jobs", "energy_versions"} & set(inspect(database.engine).get_table_names())
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT metric FROM monitors")).scalars().all() == ["live_auc"]
        with pytest.raises(IntegrityError):
            _monitor(database, "d" * 32, "estimated_auc")
    finally:
        database.dispose()
