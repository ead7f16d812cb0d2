"""Alembic migrations and schema checks, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from _pg import db, db_url  # noqa: F401  (fixtures)
from seedcore.errors import ConflictError, SchemaOutdatedError, SeedcoreError, ValidationError
from seedcore.memory.database import Database, current_revision, downgrade, head_revision, normalize_url, upgrade
from seedcore.memory.store import IncidentStore
from seedcore.memory.tables import Base, FlashbulbIncident, TuningJob

OUR_TABLES = {"flashbulb_incidents", "tuning_jobs"}


def _tables(url: str) -> set[str]:
    database = Database(url)
    try:
        return set(inspect(database.engine).get_table_names())
    finally:
        database.dispose()


def test_upgrade_downgrade_upgrade_round_trip(db_url):
    assert _tables(db_url) & OUR_TABLES == set()
    assert current_revision(db_url) is None

    upgrade(db_url)
    assert OUR_TABLES <= _tables(db_url)
    assert current_revision(db_url) == head_revision() == "0001"

    downgrade(db_url, "base")
    assert _tables(db_url) & OUR_TABLES == set()
    assert current_revision(db_url) is None

    upgrade(db_url)
    assert OUR_TABLES <= _tables(db_url)
    assert current_revision(db_url) == head_revision()


def test_migrated_schema_matches_the_models(db):
    with db.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diffs == []
    indexes = {index["name"] for index in inspect(db.engine).get_indexes("flashbulb_incidents")}
    assert {"ix_flashbulb_incidents_event_type", "ix_flashbulb_incidents_created_at"} <= indexes
    assert "ix_tuning_jobs_state" in {index["name"] for index in inspect(db.engine).get_indexes("tuning_jobs")}


def test_check_schema_refuses_an_empty_database(db_url):
    database = Database(db_url)
    with pytest.raises(SchemaOutdatedError) as caught:
        database.check_schema()
    database.dispose()
    assert "seedcore db upgrade" in caught.value.message
    assert f"code needs {head_revision()}" in caught.value.message


def test_check_schema_refuses_a_downgraded_database(db_url):
    upgrade(db_url)
    downgrade(db_url, "base")
    database = Database(db_url)
    with pytest.raises(SchemaOutdatedError, match="seedcore db upgrade"):
        database.check_schema()
    database.dispose()


def test_check_schema_accepts_head(db):
    db.check_schema()
    assert db.current_revision() == head_revision()


def test_check_schema_names_a_revision_the_code_does_not_know(db):
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(SchemaOutdatedError, match="ffff, which this code does not know"):
        db.check_schema()


def test_using_tables_before_upgrade_says_upgrade(db_url):
    database = Database(db_url)
    with pytest.raises(SchemaOutdatedError, match="seedcore db upgrade"):
        IncidentStore(database).query()
    database.dispose()


def test_database_itself_enforces_salience_range(db):
    row = FlashbulbIncident(event_type="x", outcome="y", salience=1.5, payload={})
    with pytest.raises(ConflictError):
        with db.session() as session:
            session.add(row)
    with db.session() as session:
        assert session.query(FlashbulbIncident).count() == 0  # rolled back


def test_duplicate_job_id_is_a_conflict(db):
    def job():
        return TuningJob(id="a" * 32, state="queued", request={}, trials_done=0, trials_total=1, cancel_requested=False)

    with db.session() as session:
        session.add(job())
    with pytest.raises(ConflictError, match="conflicting database write"):
        with db.session() as session:
            session.add(job())


def test_migrating_to_an_unknown_revision_is_a_validation_error(db_url):
    with pytest.raises(ValidationError) as caught:
        upgrade(db_url, "nope")
    assert caught.value.field == "revision"


def test_sqlite_creates_parent_dir_and_uses_wal(tmp_path):
    path = tmp_path / "deep" / "er" / "seedcore.db"
    database = Database(f"sqlite:///{path}")
    with database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    database.dispose()
    assert path.parent.is_dir()


@pytest.mark.parametrize("url", ["postgresql://u:p@h:5432/d", "postgres://u:p@h/d", "postgresql+psycopg://u@h/d"])
def test_postgresql_urls_use_psycopg3(url):
    assert normalize_url(url).drivername == "postgresql+psycopg"


def test_an_unreachable_database_is_a_clear_error():
    database = Database("postgresql://nobody:wrong@127.0.0.1:1/none")
    with pytest.raises(SeedcoreError) as caught:
        database.check_schema()
    database.dispose()
    assert type(caught.value) is SeedcoreError  # a 500, not a caller's mistake
    assert "database unavailable" in caught.value.message
