"""Alembic migrations driven from Python: the migrations shipped with the package, our own revision table,
upgrade and downgrade, the head revision and every revision the code knows."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError

from seedcore.db.driver_errors import translate_error
from seedcore.db.engine import make_engine, normalize_url
from seedcore.errors import SeedcoreError, ValidationError

# The top-level migrations/ directory, shipped inside the package as seedcore._migrations (a symlink in the
# source tree, real files in an installed wheel), so a non-editable install can migrate too.
MIGRATIONS_DIR = Path(str(files("seedcore._migrations")))
# Our own revision table: MLflow keeps its revision in `alembic_version`, and the two may share a database.
VERSION_TABLE = "seedcore_alembic_version"
_LEGACY_VERSION_TABLE = "alembic_version"


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic config for migrations/; the URL travels as an attribute, never via env vars."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.attributes["url"] = normalize_url(url).render_as_string(hide_password=False)
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database up to `revision` (creating the file or tables as needed)."""
    engine = make_engine(url)  # SQLite: creates the parent directory first
    try:
        _adopt_legacy_version_table(engine)
    finally:
        engine.dispose()
    _run(command.upgrade, url, revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate the database down to `revision` ("base" drops every table)."""
    _run(command.downgrade, url, revision)


def head_revision() -> str:
    """The newest revision in migrations/versions."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SeedcoreError(f"no Alembic revisions under {MIGRATIONS_DIR}")
    return head


def _adopt_legacy_version_table(engine: Engine) -> None:
    """Databases migrated before VERSION_TABLE existed kept our revision in `alembic_version`: move it."""
    try:
        with engine.begin() as connection:
            tables = set(inspect(connection).get_table_names())
            if VERSION_TABLE in tables or _LEGACY_VERSION_TABLE not in tables:
                return
            rows = [r[0] for r in connection.execute(text(f"SELECT version_num FROM {_LEGACY_VERSION_TABLE}"))]
            ours = [r for r in rows if r in known_revisions()]
            if not ours:
                return  # someone else's (MLflow's) revision table: leave it alone
            connection.execute(text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            connection.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": ours[0]})
            if len(rows) == len(ours):
                connection.execute(text(f"DROP TABLE {_LEGACY_VERSION_TABLE}"))
            else:
                connection.execute(text(f"DELETE FROM {_LEGACY_VERSION_TABLE} WHERE version_num = :v"), {"v": ours[0]})
    except DBAPIError as exc:
        raise translate_error(exc) from exc


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def _run(action, url: str | URL, revision: str) -> None:
    try:
        action(alembic_config(url), revision)
    except DBAPIError as exc:
        raise translate_error(exc) from exc
    except CommandError as exc:
        raise ValidationError(f"cannot migrate to {revision!r}: {exc}", field="revision") from exc
