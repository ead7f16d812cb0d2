"""Alembic migrations and schema checks, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from _pg import db, db_url  # noqa: F401  (fixtures)
from seedcore.errors import ConflictError, SchemaOutdatedError, SeedcoreError, ValidationError
from seedcore.db.database import Database, current_revision
from seedcore.db.engine import make_engine, normalize_url
from seedcore.db.migrations import VERSION_TABLE, downgrade, head_revision, upgrade
from seedcore.memory.store import IncidentStore
from seedcore.db.schema import metadata as schema_metadata
from seedcore.db.tables_jobs import TuningJob
from seedcore.db.tables_memory import FlashbulbIncident

pytestmark = pytest.mark.integration

OUR_TABLES = {"flashbulb_incidents", "tuning_jobs", "seedcore_locks", "prediction_log", "model_evaluations",
              "drift_references", "monitors", "schedules"}


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
    assert current_revision(db_url) == head_revision() is not None

    downgrade(db_url, "base")
    assert _tables(db_url) & OUR_TABLES == set()
    assert current_revision(db_url) is None

    upgrade(db_url)
    assert OUR_TABLES <= _tables(db_url)
    assert current_revision(db_url) == head_revision()


def test_migrated_schema_matches_the_models(db):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        diffs = compare_metadata(context, schema_metadata)
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
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'ffff'"))
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
    with pytest.raises(ConflictError) as caught:
        with db.session() as session:
            session.add(job())
    # what is taken, in our words: neither the driver's message nor the SQL it quotes
    assert caught.value.message == "a tuning job with this id already exists: choose another id"
    assert caught.value.field == "id"


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


def test_our_revision_table_is_not_mlflows(db_url):
    """MLflow keeps its revision in `alembic_version`; ours lives in its own table, so both fit in one database."""
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        connection.execute(text("INSERT INTO alembic_version VALUES ('dc11669786a5')"))  # an MLflow revision
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "dc11669786a5"
    engine.dispose()


def test_a_database_migrated_before_the_rename_is_adopted(db_url):
    """Revision 0001 recorded in `alembic_version` (the old place) is moved to our table, not re-applied."""
    upgrade(db_url, "0001")
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {VERSION_TABLE} RENAME TO alembic_version"))
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()
    assert "alembic_version" not in _tables(db_url)
    engine.dispose()
